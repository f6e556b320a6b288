"""``edgeopt agent``: a store device keeps DEST up to date from a TUF repository.

Each poll: python-tuf's ngclient refreshes the metadata (root chain, timestamp, snapshot, targets:
signatures, versions, expiry, lengths and hashes all checked by it), then for every model published
on the device's channel the agent picks the newest active release whose rollout covers the device's
cohort, downloads the delta when the installed version is its base (else the full bundle), checks
that the bundle is the model the target claims, and installs it through ``edgeopt install``
(signature, health check, atomic switch). A halted current version rolls back to the previous one.
Anything that goes wrong leaves the installed version current; a bundle that failed here is not
tried again (same bytes, same result), a repository or network failure is retried with backoff.
"""

from __future__ import annotations

import json
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from edgeopt.atomic import try_lock
from edgeopt.bundle import delta, layout
from edgeopt.bundle.versions import parse_version
from edgeopt.errors import EdgeoptError, GateError, UsageError, VerificationError, first_line
from edgeopt.fleet.release import DELTA, FULL, HALTED, Release
from edgeopt.fleet.reports import FAILED, INSTALLED, UNCHANGED, Report, send
from edgeopt.runtime.archive import NoSpaceError

STATE_DIR = ".edgeopt-agent"  # under DEST: ngclient's trusted metadata, downloads, bundles that failed
MIN_BACKOFF_S = 2.0


@dataclass
class AgentConfig:
    repo_url: str
    root: Path  # the trusted root.json provisioned with the device
    public_key: Path  # the bundle signer's public key (edgeopt keygen)
    dest: Path
    device_id: str
    channel: str = "stable"
    report_url: str | None = None
    interval: float = 300.0

    def __post_init__(self):
        if not self.repo_url.startswith(("http://", "https://")):
            raise UsageError(f"--repo {self.repo_url!r} is not a URL; give http(s)://HOST/PATH")
        for what, path in (("--root", self.root), ("--public-key", self.public_key)):
            if not Path(path).is_file():
                raise UsageError(f"no such {what} file: {path}")
        if not self.device_id.strip():
            raise UsageError("--device-id is empty; give the device's stable id")
        if self.interval <= 0:
            raise UsageError(f"--interval {self.interval} must be positive (seconds)")
        if self.dest.exists() and not self.dest.is_dir():
            raise UsageError(f"--dest {self.dest} is a file; give a folder")


class Agent:
    def __init__(self, config: AgentConfig, log=lambda msg: None):
        self.cfg, self.log = config, log
        self.state = config.dest / STATE_DIR
        self.failed_file = self.state / "failed.json"
        self.transient_error = False  # the last poll met the repository, the network or the disk failing

    # one poll -----------------------------------------------------------------------------------
    def poll(self) -> list[Report]:
        """One attempt for every model on the channel; never raises for the repository, the network,
        a bad bundle or a full disk (each becomes a report with an error)."""
        self.transient_error = False
        try:
            self.state.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.transient_error = True
            return [Report(self.cfg.device_id, "", None, UNCHANGED, f"cannot write {self.state}: {e.strerror}")]
        with try_lock(self.state / "agent.lock") as mine:
            if not mine:
                return [Report(self.cfg.device_id, m, cur, UNCHANGED, "another agent is polling this DEST", cur)
                        for m, cur in self._installed().items()] or [
                    Report(self.cfg.device_id, "", None, UNCHANGED, "another agent is polling this DEST")]
            return self._poll()

    def _poll(self) -> list[Report]:
        try:
            updater = self._updater()
            updater.refresh()
            releases = self._releases(updater)
        except (*_transport_errors(), ValueError) as e:
            why, self.transient_error = _describe(e), True
            return [Report(self.cfg.device_id, m, cur, UNCHANGED, f"repository: {why}; keeping {cur}", cur)
                    for m, cur in self._installed().items()] or [
                Report(self.cfg.device_id, "", None, UNCHANGED, f"repository: {why}; nothing installed")]
        models = sorted({r.model for _, r, _ in releases})
        if not models:
            device = self.cfg.device_id
            return [Report(device, m, cur, UNCHANGED, current=cur) for m, cur in self._installed().items()] or [
                Report(device, "", None, UNCHANGED, f"nothing is published on channel {self.cfg.channel}")]
        return [self._update_model(updater, m, [(p, r, i) for p, r, i in releases if r.model == m])
                for m in models]

    def _updater(self):
        from tuf.ngclient import Updater

        meta = self.state / "metadata"
        meta.mkdir(exist_ok=True)
        # the provisioned root only on first contact; afterwards ngclient's own newest trusted root
        bootstrap = None if (meta / "root.json").exists() else Path(self.cfg.root).read_bytes()
        base = self.cfg.repo_url.rstrip("/")
        return Updater(metadata_dir=str(meta), metadata_base_url=f"{base}/metadata/",
                       target_base_url=f"{base}/targets/", target_dir=str(self.state / "downloads"),
                       bootstrap=bootstrap)

    def _releases(self, updater) -> list[tuple[str, Release, object]]:
        """(path, release, TargetFile) for this channel. The paths come from the targets.json that
        ngclient just verified and persisted; each TargetFile is then taken from ngclient itself."""
        listing = json.loads((self.state / "metadata" / "targets.json").read_bytes())["signed"]["targets"]
        out = []
        for path in sorted(listing):
            info = updater.get_targetinfo(path)
            release = Release.from_custom(info.custom) if info is not None else None
            if release is not None and release.channel == self.cfg.channel:
                out.append((path, release, info))
        return out

    def _installed(self) -> dict[str, str | None]:
        dest = self.cfg.dest
        if not dest.is_dir():
            return {}
        return {p.name: layout.link_target(p, layout.CURRENT) for p in sorted(dest.iterdir())
                if p.is_dir() and not p.name.startswith(".") and (p / layout.CURRENT).is_symlink()}

    # one model ----------------------------------------------------------------------------------
    def _update_model(self, updater, model: str, releases) -> Report:
        device, model_dir = self.cfg.device_id, self.cfg.dest / model
        current = layout.link_target(model_dir, layout.CURRENT)
        previous = layout.link_target(model_dir, layout.PREVIOUS)
        fulls = {r.version: (p, r, i) for p, r, i in releases if r.kind == FULL}
        # the newest release for this device, passing over any whose bytes already failed here
        eligible = sorted((v for v, (_, r, _) in fulls.items() if r.covers(device)), key=parse_version, reverse=True)
        skipped = [v for v in eligible if self._failed_before(*fulls[v][::2])]
        desired = next((v for v in eligible if v not in skipped), None)
        halted = current is not None and current in fulls and fulls[current][1].state == HALTED
        if halted and (desired is None or parse_version(desired) < parse_version(current)):
            return self._roll_back(model, current, previous, fulls, desired, updater)
        if desired is None or (current is not None and parse_version(desired) <= parse_version(current)):
            newer = [v for v in skipped if current is None or parse_version(v) > parse_version(current)]
            note = f"{model} {newer[0]} failed on this device before; keeping {current}" if newer else ""
            return Report(device, model, newer[0] if newer else current, UNCHANGED, note, current)
        path, _, info = fulls[desired]
        delta_target = next(((p, i) for p, r, i in releases
                             if r.kind == DELTA and r.version == desired and r.base == current), None)
        attempts = ([(delta_target[0], delta_target[1], DELTA)] if delta_target else []) + [(path, info, FULL)]
        return self._install(updater, model, desired, current, attempts, allow_downgrade=halted)

    def _install(self, updater, model, version, current, attempts, *, allow_downgrade=False) -> Report:
        """Try each (path, TargetFile, kind) in turn (the delta, then the full bundle) until one
        installs, fails its health check, or the last is refused."""
        from edgeopt.bundle.installation import install

        device, fetched = self.cfg.device_id, 0
        for n, (path, info, kind) in enumerate(attempts):
            local, refused = None, None
            try:
                local = self._download(updater, info)
                fetched += info.length
                manifest, _ = delta.read_head(Path(local))
                name = (manifest.get("model") or {}).get("name")
                if name != model or str(manifest.get("version")) != version:
                    raise UsageError(f"{path} holds {name} {manifest.get('version')}, not {model} {version}; "
                                     "the repository's target is wrong")
                self.log(f"installing {model} {version} ({kind}, {info.length} bytes)")
                r = install(bundle=local, dest=self.cfg.dest, public_key=self.cfg.public_key,
                            allow_downgrade=allow_downgrade)
                return Report(device, model, version, INSTALLED, current=r.version, health="passed", kind=kind,
                              bytes=fetched)
            except VerificationError as e:  # tampered, wrong signer, expired: this bundle, not the version
                refused = e
            except GateError as e:  # the health check: this version does not work here, whichever bundle brought it
                for p, i, _ in attempts:
                    self._remember_failed(p, i)
                return Report(device, model, version, FAILED, first_line(e, 400), current, "failed", kind, fetched)
            except UsageError as e:  # a full disk is the device's; anything else (wrong model, no base) the bundle's
                if not isinstance(e.__cause__, NoSpaceError):
                    refused = e
                else:
                    self.transient_error = True
                    return Report(device, model, version, UNCHANGED, f"{first_line(e, 300)}; keeping {current}",
                                  current, None, kind, fetched)
            except _transport_errors() as e:  # the network, a tampered or cut download, the disk
                self.transient_error = True
                return Report(device, model, version, UNCHANGED,
                              f"{path}: {_describe(e)}; keeping {current}", current, None, kind, fetched)
            finally:
                if local is not None:
                    Path(local).unlink(missing_ok=True)
            if n < len(attempts) - 1:
                self.log(f"{kind} bundle refused ({first_line(refused)}); trying the full bundle")
                continue
            self._remember_failed(path, info)
            return Report(device, model, version, FAILED, first_line(refused, 400), current, None, kind, fetched)
        raise UsageError("no bundle to install")  # callers always pass the full bundle last

    def _download(self, updater, info) -> str:
        downloads = self.state / "downloads"
        downloads.mkdir(exist_ok=True)
        local = downloads / f"{info.hashes['sha256']}.edgepkg"
        return updater.find_cached_target(info, str(local)) or updater.download_target(info, str(local))

    def _roll_back(self, model, current, previous, fulls, desired, updater) -> Report:
        from edgeopt.bundle.installation import rollback

        device = self.cfg.device_id
        reason = fulls[current][1].reason
        usable = previous is not None and previous != current
        if usable and (previous not in fulls or fulls[previous][1].state != HALTED):
            try:
                rollback(target=self.cfg.dest / model)
                return Report(device, model, previous, INSTALLED, f"{current} was halted ({reason})", previous,
                              None, "rollback")
            except EdgeoptError as e:
                self.log(f"rollback failed ({first_line(e)})")
        if desired is not None:
            path, _, info = fulls[desired]
            return self._install(updater, model, desired, current, [(path, info, FULL)], allow_downgrade=True)
        return Report(device, model, current, UNCHANGED,
                      f"{current} was halted ({reason}) and no earlier version is available; keeping it", current)

    def _failed_before(self, path: str, info) -> bool:
        return self._failed().get(path) == info.hashes["sha256"]

    def _remember_failed(self, path: str, info) -> None:
        failed = {**self._failed(), path: info.hashes["sha256"]}
        tmp = self.failed_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(failed))
        os.rename(tmp, self.failed_file)

    def _failed(self) -> dict:
        try:
            return json.loads(self.failed_file.read_text())
        except (OSError, ValueError):
            return {}

    # the loop -----------------------------------------------------------------------------------
    def run(self, *, once: bool = False, stop: threading.Event | None = None, max_polls: int | None = None,
            on_report=lambda report: None) -> list[Report]:
        """Poll every ``interval`` seconds (after a failed poll: sooner, backing off from 2 s to the
        interval); returns the last poll's reports when ``once``, ``stop`` or ``max_polls`` ends it."""
        stop = stop or threading.Event()
        failures, polls = 0, 0
        while True:
            reports = self.poll()
            polls += 1
            for r in reports:
                on_report(r)
                if self.cfg.report_url:
                    err = send(r, self.cfg.report_url)
                    if err:
                        self.log(err)
            if once or (max_polls is not None and polls >= max_polls):
                return reports
            failures = failures + 1 if self.transient_error else 0
            wait = self.cfg.interval if not failures else min(self.cfg.interval,
                                                                MIN_BACKOFF_S * 2 ** (failures - 1))
            if stop.wait(wait * random.uniform(0.9, 1.1)):
                return reports


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a repository, the network or the disk raise through python-tuf: its own errors, OSError,
    and urllib3's (python-tuf 7.0.1 lets a body cut short escape as urllib3's ProtocolError)."""
    import urllib3.exceptions
    from tuf.api.exceptions import DownloadError, RepositoryError

    return RepositoryError, DownloadError, OSError, urllib3.exceptions.HTTPError


def _describe(e: BaseException) -> str:
    """One line for a python-tuf, urllib3 or OS error: its type (which says what failed), its message,
    and the root cause when it wraps one (python-tuf reports a refused connection as a slow retrieval)."""
    text = f"{type(e).__name__}: {first_line(e, 160)}" if str(e) else type(e).__name__
    cause, seen = e.__cause__ or e.__context__, 0
    while cause is not None and seen < 5:
        inner = getattr(cause, "reason", None)  # urllib3's MaxRetryError keeps the real error here
        cause = inner if isinstance(inner, BaseException) else cause
        if not (cause.__cause__ or cause.__context__):
            break
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    if cause is not None and cause is not e:
        text += f" ({type(cause).__name__}: {first_line(cause, 160)})"
    return text

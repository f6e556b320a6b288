"""``edgeopt publish`` and ``edgeopt fleet promote``: releases in, rollout percentages up or halted.

A full bundle becomes a new release of its model at the given channel and rollout; a delta bundle
(``edgeopt package --base``) is published beside the full bundle of the same version and shares
its channel, rollout and state, so one promotion moves both and a device picks whichever it can use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.bundle import delta
from edgeopt.bundle.verification import check_bundle_path
from edgeopt.bundle.versions import parse_version, safe_name
from edgeopt.errors import GateError, UsageError
from edgeopt.fleet import repository
from edgeopt.fleet.release import ACTIVE, DELTA, FULL, HALTED, Release, check_rollout, target_path
from edgeopt.fleet.reports import read_reports, version_counts


@dataclass
class PublishResult:
    target: str  # the TUF target path
    release: Release
    length: int
    sha256: str
    targets_version: int  # the targets metadata version that signed it

    def to_json(self) -> dict:
        return {"target": self.target, "model": self.release.model, "version": self.release.version,
                "channel": self.release.channel, "rollout": self.release.rollout, "kind": self.release.kind,
                "base": self.release.base, "length": self.length, "sha256": self.sha256,
                "targets_version": self.targets_version}


@dataclass
class PromoteResult:
    model: str
    version: str
    rollout_before: float
    rollout: float
    state: str  # active | halted
    tried: int
    failed: int
    reason: str = ""

    def to_json(self) -> dict:
        return {"model": self.model, "version": self.version, "rollout_before": self.rollout_before,
                "rollout": self.rollout, "state": self.state, "tried": self.tried, "failed": self.failed,
                "reason": self.reason}


def publish(*, bundle: str | os.PathLike, repo: str | os.PathLike, keys: str | os.PathLike,
            channel: str = "stable", rollout: float = 100.0,
            public_key: str | os.PathLike | None = None) -> PublishResult:
    """``public_key``: verify a full bundle first (files, signature, expiry), so one that every device
    would refuse is never published (a delta is checked by `install`, against its base)."""
    bundle = Path(bundle)
    check_bundle_path(bundle)
    check_rollout(rollout)
    if not safe_name(channel):
        raise UsageError(f"--channel {channel!r}: use letters, digits, '.', '-', '_' only")
    manifest, is_delta = delta.read_head(bundle)
    model, version = str((manifest.get("model") or {}).get("name") or ""), str(manifest.get("version") or "")
    if not manifest or not safe_name(model) or not safe_name(version):
        raise UsageError(f"{bundle} is not an edgeopt bundle with a model name and version; build it with "
                         "`edgeopt package`")
    parse_version(version, "bundle version")
    if public_key is not None and not is_delta:
        from edgeopt.bundle.verification import verify

        verify(bundle=bundle, public_key=public_key)  # GateError (exit 1) when it fails
    with repository.locked(keys):
        state = repository.load(repo, keys)
        releases = state.releases()
        same = {p: r for p, r in releases.items() if r.model == model and r.version == version}
        full = next((r for r in same.values() if r.kind == FULL), None)
        if is_delta:
            base = str(manifest["bundle"]["base"]["version"])
            if full is None:
                raise UsageError(f"{bundle.name} is a delta for {model} {version}, whose full bundle is not "
                                 "published; publish the full bundle first (devices without the base need it)")
            release = Release(model, version, full.channel, full.rollout, DELTA, base, full.state, full.reason)
            path = target_path(model, version, f"{model}-{version}-from-{base}.edgepkg")
        else:
            if full is not None:
                raise UsageError(f"{model} {version} is already published (channel {full.channel}); a "
                                 "published version never changes: package a new version")
            release = Release(model, version, channel, float(rollout))
            path = target_path(model, version, f"{model}-{version}.edgepkg")
        if path in releases:
            raise UsageError(f"{path} is already published; a published target never changes")
        info = repository.add_target(state, bundle, path, release)
        return PublishResult(path, release, info.length, info.hashes["sha256"], state.targets.signed.version)


def promote(*, repo: str | os.PathLike, keys: str | os.PathLike, reports: str | os.PathLike, version: str,
            to: float, max_failures: float = 0.0, model: str | None = None) -> PromoteResult:
    """Raise ``version``'s rollout to ``to`` percent while at most ``max_failures`` percent of the
    devices that tried it failed; otherwise halt it (devices running it roll back) and raise GateError."""
    check_rollout(to)
    if not 0 <= max_failures <= 100:
        raise UsageError(f"--max-failures {max_failures} is not a percentage; give 0 to 100")
    with repository.locked(keys):
        state = repository.load(repo, keys)
        matches = _matches(state, repo, version, model)
        current = next(r for r in matches.values() if r.kind == FULL)
        name = current.model
        if current.state == HALTED:
            raise UsageError(f"{name} {version} was halted ({current.reason}); publish a fixed version instead")
        if to < current.rollout:
            raise UsageError(f"{name} {version} is at {current.rollout:g} %; promote only raises a rollout "
                             f"(asked {to:g} %)")
        counts = version_counts(read_reports(reports)).get(name, {}).get(version)
        tried = counts.tried if counts else 0
        failed = counts.failed if counts else 0
        share = 100.0 * failed / tried if tried else 0.0
        if share > max_failures:
            reason = (f"{failed} of {tried} devices that tried it failed ({share:.1f} % > --max-failures "
                      f"{max_failures:g} %)")
            repository.update_releases(state, {p: _with(r, state=HALTED, reason=reason) for p, r in matches.items()})
            raise GateError(f"halted {name} {version} at {current.rollout:g} %: {reason}; devices running it "
                            "roll back to their previous version")
        repository.update_releases(state, {p: _with(r, rollout=float(to)) for p, r in matches.items()})
        return PromoteResult(name, version, current.rollout, float(to), ACTIVE, tried, failed)


def halt(*, repo: str | os.PathLike, keys: str | os.PathLike, version: str, reason: str,
         model: str | None = None) -> PromoteResult:
    """Withdraw ``version`` by hand: agents stop taking it and devices running it roll back."""
    with repository.locked(keys):
        state = repository.load(repo, keys)
        matches = _matches(state, repo, version, model)
        current = next(r for r in matches.values() if r.kind == FULL)
        if current.state == HALTED:
            raise UsageError(f"{current.model} {version} is already halted ({current.reason})")
        repository.update_releases(state, {p: _with(r, state=HALTED, reason=reason) for p, r in matches.items()})
        return PromoteResult(current.model, version, current.rollout, current.rollout, HALTED, 0, 0, reason)


def _matches(state, repo, version: str, model: str | None) -> dict[str, Release]:
    """The targets (full and delta) of ``version``, of one model."""
    matches = {p: r for p, r in state.releases().items()
               if r.version == version and (model is None or r.model == model)}
    models = sorted({r.model for r in matches.values()})
    if not matches:
        raise UsageError(f"version {version} is not published in {repo}" + (f" for {model}" if model else ""))
    if len(models) > 1:
        raise UsageError(f"version {version} is published for several models ({', '.join(models)}); pass --model")
    return matches


def _with(release: Release, **changes) -> Release:
    from dataclasses import replace

    return replace(release, **changes)

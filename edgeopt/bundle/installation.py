"""``edgeopt install`` and ``edgeopt rollback`` (layout and crash safety: layout.py).

install: lock DEST; unpack into a staging folder (safe extraction, every sha256 checked, fsynced);
check the signature (or refuse an unsigned bundle unless asked), the expiry and the version (no
downgrade unless asked); rename the staging folder to ``DEST/<name>/<version>``; in a fresh process,
prepare the install-time cache and run the golden inputs through the device runtime; only when they
match, point ``previous`` at the old version and switch ``current`` to the new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.bundle import delta, layout
from edgeopt.bundle.verification import check_bundle_path, unpack_checked
from edgeopt.bundle.versions import expired, parse_version, safe_name
from edgeopt.errors import GateError, UsageError, VerificationError
from edgeopt.runtime import manifest as manifest_io
from edgeopt.runtime.archive import DEFAULT_MAX_BYTES, NoSpaceError
from edgeopt.runtime.durable import fsync_dir
from edgeopt.runtime.errors import BundleError

HEALTH_TIMEOUT_S = 600


@dataclass
class InstallResult:
    name: str
    version: str
    path: Path  # DEST/<name>/<version>
    current: Path  # DEST/<name>/current
    previous: str | None  # the version kept for rollback
    signature: str  # verified | not checked | absent
    health: dict = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # older versions pruned

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.path), "current": str(self.current),
                "previous": self.previous, "signature": self.signature, "health": self.health,
                "removed": self.removed}


@dataclass
class RollbackResult:
    name: str
    current: str  # the version now current
    previous: str  # the version rolled back from (kept: rollback again to return to it)

    def to_json(self) -> dict:
        return {"name": self.name, "current": self.current, "previous": self.previous}


def health_check(folder: Path, *, timeout: float = HEALTH_TIMEOUT_S) -> dict:
    """Prepare the cache and run the golden check in a fresh process (python -m edgeopt.runtime.health)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeopt.runtime.health", str(folder), "--prepare"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"passed": False, "error": f"the health check took more than {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"passed": False, "error": f"the health check crashed (exit {proc.returncode}): {tail}"}
    result = json.loads(lines[-1])
    result["passed"] = bool(result.get("passed")) and proc.returncode == 0
    return result


def _installed_version(model_dir: Path) -> str | None:
    target = layout.link_target(model_dir, layout.CURRENT)
    if target is None and (model_dir / layout.CURRENT).exists():
        raise UsageError(f"{model_dir / layout.CURRENT} is not a symlink; it was not made by edgeopt install")
    return target


def _check_policy(manifest: dict, bundle: Path, current: str | None, allow_downgrade: bool) -> tuple[str, str]:
    name = (manifest.get("model") or {}).get("name", "")
    version = str(manifest.get("version") or "")
    if not safe_name(name) or not safe_name(version):
        raise UsageError(f"{bundle.name}: model name {name!r} or version {version!r} cannot name a folder")
    info = manifest.get("bundle") or {}
    if expired(info.get("expires")):
        raise VerificationError(f"verification failed: {bundle.name} expired on {info['expires']} (its signed "
                                "expiry); package a fresh bundle")
    new = parse_version(version, "bundle version")
    if current is not None:
        old = parse_version(current, "installed version")
        if new == old:
            raise UsageError(f"{name} {version} is already installed and current; nothing to do")
        if new < old and not allow_downgrade:
            raise UsageError(f"{bundle.name} has version {version}, older than the installed {current}; "
                             "refusing a downgrade (pass --allow-downgrade to install it anyway)")
    return name, version


def install(*, bundle: str | os.PathLike, dest: str | os.PathLike, public_key: str | os.PathLike | None = None,
            allow_downgrade: bool = False, allow_unsigned: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
            health_timeout: float = HEALTH_TIMEOUT_S, log=lambda msg: None) -> InstallResult:
    bundle, dest = Path(bundle), Path(dest)
    check_bundle_path(bundle)
    if public_key is not None and not Path(public_key).is_file():
        raise UsageError(f"no such public key: {public_key}")
    if public_key is None and not allow_unsigned:
        raise UsageError("no --public-key: pass the signer's public key (or --allow-unsigned to skip the "
                         "signature check)")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--dest {dest} is a file; give a folder")
    dest.mkdir(parents=True, exist_ok=True)
    with layout.locked(dest):
        layout.clean_stale(dest)
        stage = Path(tempfile.mkdtemp(prefix=layout.STAGING_PREFIX, dir=dest))
        stage.chmod(0o755)  # the installed version is readable by the serving user, like its files
        try:
            log(f"unpacking and checking {bundle.name}")
            try:
                if delta.read_head(bundle)[1]:
                    log("rebuilding the version from the installed base and the delta")
                    manifest, signature = delta.rebuild(bundle, stage, dest, public_key, durable=True,
                                                        max_bytes=max_bytes)
                else:
                    manifest, signature = unpack_checked(bundle, stage, public_key, durable=True, max_bytes=max_bytes)
            except NoSpaceError as e:  # this device, not the bundle
                raise UsageError(str(e)) from e  # the cause tells a full disk (NoSpaceError) apart
            except BundleError as e:  # exit 1, as `edgeopt verify` says for the same bundle
                raise VerificationError(f"verification failed: {e}") from None
            if signature == "absent" and not allow_unsigned:
                raise UsageError(f"{bundle.name} is not signed; install it only with --allow-unsigned")
            raw_name = str((manifest.get("model") or {}).get("name") or "")
            if not safe_name(raw_name):
                raise UsageError(f"{bundle.name}: model name {raw_name!r} cannot name a folder")
            model_dir = dest / raw_name
            current = _installed_version(model_dir) if model_dir.is_dir() else None
            name, version = _check_policy(manifest, bundle, current, allow_downgrade)
            model_dir.mkdir(exist_ok=True)
            target = model_dir / version
            layout.remove(target)  # an earlier copy of this version (not current: checked above)
            layout.remove(model_dir / layout.CACHE / version)
            os.rename(stage, target)
            fsync_dir(model_dir)
            fsync_dir(dest)
        finally:
            if stage.exists():
                layout.remove(stage)
        log("health check: golden inputs through the device runtime, in a fresh process")
        health = health_check(target, timeout=health_timeout)
        if not health["passed"]:
            layout.remove(target)
            layout.remove(model_dir / layout.CACHE / version)
            if current is None:  # a first install leaves no empty DEST/<name> behind
                layout.remove(model_dir)
            still = f"{current} is still current" if current else "nothing was installed"
            why = health.get("error") or (f"{health.get('artifact')} on {health.get('runtime')}: max abs diff "
                                          f"{health.get('max_abs_diff', float('nan')):.3g}, min cosine "
                                          f"{health.get('cosine_min', float('nan')):.6f} (allowed: atol "
                                          f"{health.get('atol')}, rtol {health.get('rtol')}, cosine >= "
                                          f"{health.get('min_cosine')})")
            raise GateError(f"health check failed for {name} {version}: {why}; {still}")
        if current is not None:
            layout.set_link(model_dir, layout.PREVIOUS, current)
        layout.set_link(model_dir, layout.CURRENT, version)
        removed = layout.prune(model_dir)
    return InstallResult(name, version, target, model_dir / layout.CURRENT, current, signature, health, removed)


def rollback(*, target: str | os.PathLike) -> RollbackResult:
    """Switch ``DEST/<name>`` back to its previous version (checked file by file first)."""
    model_dir = Path(target)
    if model_dir.name == layout.CURRENT:
        model_dir = model_dir.parent
    if not model_dir.is_dir():
        raise UsageError(f"no such installed model: {model_dir} (pass DEST/<name>)")
    with layout.locked(model_dir.parent):
        current = _installed_version(model_dir)
        previous = layout.link_target(model_dir, layout.PREVIOUS)
        if current is None:
            raise UsageError(f"{model_dir} has no current version; install one first")
        if previous is None or previous == current or not (model_dir / previous).is_dir():
            raise UsageError(f"{model_dir} has no previous version to roll back to")
        try:
            manifest_io.check_files(model_dir / previous, manifest_io.read(model_dir / previous), hashes=True)
        except BundleError as e:
            raise UsageError(f"previous version {previous} is damaged ({e}); not rolling back") from None
        layout.set_link(model_dir, layout.PREVIOUS, current)
        layout.set_link(model_dir, layout.CURRENT, previous)
    return RollbackResult(model_dir.name, previous, current)

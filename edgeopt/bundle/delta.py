"""Delta bundles: only what changed since a base bundle, rebuilt into the full version on the device.

A delta is a tar like a full bundle, holding the NEW version's manifest.json and model.sig (made
over the full version's files, exactly as the full bundle would ship them), ``delta.json`` (how to
rebuild each file: ``base`` = the installed base version has it byte for byte; ``patch`` = a
binary patch of the base's file at the same path (patch.py: for ONNX files only the changed
initializers); ``bundle`` = shipped whole) and the patches and whole files under ``delta/``.
install rebuilds the version folder from the installed base, checks every file's sha256 against
the signed manifest and the signature over all of them, then health-checks and switches exactly as
for a full bundle. delta.json is not signed and need not be: whatever it says, only bytes that
hash to the signed manifest get installed. The manifest's ``bundle.base`` names the base version
and its manifest's sha256, so a delta is only ever applied to the version it was made against.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.bundle import patch
from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.durable import fsync_file
from edgeopt.runtime.manifest import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, check_files, is_safe_relpath, parse

PLAN = "delta.json"
PAYLOAD = "delta/"
WORTH = 0.9  # ship a patch only when it is at most this share of the whole file


def read_head(bundle: Path) -> tuple[dict, bool]:
    """(manifest, is a delta) from a bundle's first members, without unpacking it."""
    try:
        with tarfile.open(bundle, "r:*") as tar:
            manifest, has_plan = None, False
            for _ in range(3):
                member = tar.next()
                if member is None:
                    break
                if member.name == MANIFEST and member.isreg() and member.size <= MAX_MANIFEST_BYTES:
                    manifest = parse(tar.extractfile(member).read(), f"{bundle}:{MANIFEST}")
                elif member.name == PLAN:
                    has_plan = True
    except (tarfile.TarError, EOFError, OSError):
        return {}, False
    return manifest or {}, has_plan and bool(((manifest or {}).get("bundle") or {}).get("base"))


def base_record(base_manifest_bytes: bytes, base_manifest: dict) -> dict:
    return {"name": (base_manifest.get("model") or {}).get("name"), "version": base_manifest.get("version"),
            "manifest_sha256": hashlib.sha256(base_manifest_bytes).hexdigest()}


def plan(stage: Path, base_dir: Path, new_files: dict, base_files: dict) -> tuple[dict, dict[str, bytes]]:
    """What each file of the new version is rebuilt from, and the payload members (name -> bytes)."""
    by_hash = {e["sha256"]: p for p, e in base_files.items()}
    steps, payload = {}, {}
    for rel, entry in new_files.items():
        if entry["sha256"] in by_hash:
            steps[rel] = {"from": "base", "path": by_hash[entry["sha256"]]}
            continue
        data = (stage / rel).read_bytes()
        if rel in base_files:
            diff = patch.make((base_dir / rel).read_bytes(), data)
            if len(diff) <= WORTH * len(data):
                steps[rel] = {"from": "patch", "member": f"{PAYLOAD}{rel}.patch"}
                payload[steps[rel]["member"]] = diff
                continue
        steps[rel] = {"from": "bundle", "member": f"{PAYLOAD}{rel}"}
        payload[steps[rel]["member"]] = data
    return {"schema": 1, "files": steps}, payload


def write(target: Path, stage: Path, steps: dict, payload: dict[str, bytes]) -> None:
    """manifest.json, model.sig, delta.json, then the payload."""
    import io

    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        members = [(MANIFEST, (stage / MANIFEST).read_bytes())]
        if (stage / SIGNATURE).exists():
            members.append((SIGNATURE, (stage / SIGNATURE).read_bytes()))
        members.append((PLAN, json.dumps(steps, indent=1).encode()))
        members += sorted(payload.items())
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    fsync_file(target)


def _read_members(bundle: Path, max_bytes: int) -> dict[str, bytes]:
    from edgeopt.runtime.archive import _members

    out, total = {}, 0
    with tarfile.open(bundle, "r:*") as tar:
        members = _members(tar, bundle)
        for name, m in members.items():
            if not m.isreg():
                continue
            if name not in (MANIFEST, SIGNATURE, PLAN) and not name.startswith(PAYLOAD):
                raise BundleError(f"{bundle}: unexpected member {name!r} in a delta bundle")
            total += m.size
            if total > max_bytes:
                raise BundleError(f"{bundle} is larger than the limit of {max_bytes} bytes")
            data = tar.extractfile(m).read()
            if len(data) != m.size:
                raise BundleError(f"{bundle} is truncated (member {name} is short)")
            out[name] = data
    return out


def rebuild(bundle: Path, stage: Path, dest: Path, public_key, *, durable: bool, max_bytes: int) -> tuple[dict, str]:
    """Rebuild the full version folder in ``stage`` from the base installed under ``dest``; every
    file checked against the signed manifest, then the signature. Returns (manifest, signature state)."""
    try:
        members = _read_members(bundle, max_bytes)
    except (tarfile.TarError, EOFError) as e:
        raise BundleError(f"{bundle} is not a readable bundle: truncated, or not a tar archive ({e})") from None
    if MANIFEST not in members or PLAN not in members:
        raise BundleError(f"{bundle} is not a delta bundle (no {MANIFEST} or {PLAN})")
    manifest = parse(members[MANIFEST], f"{bundle}:{MANIFEST}")
    base = (manifest.get("bundle") or {}).get("base") or {}
    name = str((manifest.get("model") or {}).get("name") or "")
    base_dir = dest / name / str(base.get("version"))
    if not is_safe_relpath(name) or not is_safe_relpath(str(base.get("version"))) or not base_dir.is_dir():
        from edgeopt.bundle.layout import CURRENT, link_target

        have = link_target(dest / name, CURRENT) if (dest / name).is_dir() else None
        raise UsageError(f"{bundle.name} is a delta against {name} {base.get('version')}, which is not installed "
                          f"under {dest} (installed: {have or 'nothing'}); install the full bundle instead")
    base_manifest_bytes = (base_dir / MANIFEST).read_bytes()
    if hashlib.sha256(base_manifest_bytes).hexdigest() != base.get("manifest_sha256"):
        raise UsageError(f"{bundle.name} was made against another {name} {base.get('version')} than the one "
                          f"installed (manifests differ); install the full bundle instead")
    base_manifest = parse(base_manifest_bytes, str(base_dir / MANIFEST))
    check_files(base_dir, base_manifest, hashes=True)  # the base must be intact to build on it
    try:
        steps = json.loads(members[PLAN])["files"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{bundle}: {PLAN} is malformed (tampered bundle)") from None
    files = manifest.get("files") or {}
    if set(steps) != set(files):
        raise BundleError(f"{bundle}: {PLAN} does not cover exactly the files of {MANIFEST} (tampered bundle)")
    for rel, step in steps.items():
        try:
            kind = step["from"]
            if kind == "base":
                src = step["path"]
                if src not in (base_manifest.get("files") or {}):
                    raise KeyError(src)
                data = (base_dir / src).read_bytes()
            elif kind == "patch":
                data = patch.apply((base_dir / rel).read_bytes(), members[step["member"]])
            else:
                data = members[step["member"]]
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise BundleError(f"{bundle}: cannot rebuild {rel} ({type(e).__name__}: {e}); tampered or made "
                              "against another base") from None
        if hashlib.sha256(data).hexdigest() != files[rel]["sha256"]:
            raise BundleError(f"{bundle}: the rebuilt {rel} does not match its sha256 in {MANIFEST} (tampered or "
                              "corrupt delta)")
        _write(stage / rel, data, durable)
    for special in (MANIFEST, SIGNATURE):
        if special in members:
            _write(stage / special, members[special], durable)
    check_files(stage, manifest, hashes=True)
    from edgeopt.bundle.sign import signature_state

    return manifest, signature_state(bundle, stage, SIGNATURE in members, public_key)


def _write(path: Path, data: bytes, durable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def unpack_base(base: Path, into: Path) -> tuple[dict, bytes]:
    """Unpack the base bundle (every hash checked): (its manifest, its manifest's bytes)."""
    from edgeopt.runtime.archive import extract

    manifest, _ = extract(base, into)
    return manifest, (into / MANIFEST).read_bytes()


__all__ = ["PLAN", "base_record", "plan", "read_head", "rebuild", "unpack_base", "write"]

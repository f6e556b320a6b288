"""``edgeopt verify``: unpack a bundle to a temporary folder, check every file against the
manifest, the signature against a public key, the expiry; report the evidence it carries."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.bundle.sign import signature_state
from edgeopt.bundle.versions import expired
from edgeopt.errors import GateError, UsageError
from edgeopt.runtime.errors import BundleError


@dataclass
class VerifyResult:
    bundle: Path
    name: str
    version: str | None
    signature: str  # verified | not checked (no --public-key) | absent
    files: int
    bytes: int
    artifacts: list[dict] = field(default_factory=list)
    expires: str | None = None
    signer: str | None = None
    evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version, "signature": self.signature,
                "signer": self.signer, "expires": self.expires, "files": self.files, "bytes": self.bytes,
                "artifacts": self.artifacts, "evidence": self.evidence}


def check_bundle_path(bundle: Path) -> None:
    if not bundle.exists():
        raise UsageError(f"no such bundle: {bundle}")
    if not bundle.is_file():
        raise UsageError(f"{bundle} is not a file; pass a .edgepkg bundle")


def unpack_checked(bundle: Path, dest: Path, public_key, *, durable: bool = False,
                   max_bytes: int | None = None) -> tuple[dict, str]:
    """Extract (hashes checked) and check the signature when a key is given: (manifest, signature state).
    Raises BundleError (tampered, truncated, bad signature) for the caller to map."""
    from edgeopt.runtime.archive import DEFAULT_MAX_BYTES, extract

    manifest, signed = extract(bundle, dest, durable=durable, max_bytes=max_bytes or DEFAULT_MAX_BYTES)
    return manifest, signature_state(bundle, dest, signed, public_key)


def _verify_folder(folder: Path, public_key) -> tuple[dict, str]:
    """An installed version (DEST/<name>, its current, or DEST/<name>/<version>): every file's
    sha256, no file the manifest does not list, and the signature when a key is given."""
    from edgeopt.runtime import manifest as manifest_io
    from edgeopt.runtime.signature import verify_folder

    if not (folder / manifest_io.MANIFEST).exists() and (folder / "current").is_dir():
        folder = folder / "current"
    folder = folder.resolve()  # model-signing refuses a symlinked model path
    try:
        manifest = manifest_io.read(folder)
        if manifest.get("files") is None:
            raise UsageError(f"{folder} is not a bundle or an installed version (its manifest has no 'files')")
        manifest_io.check_files(folder, manifest, hashes=True)
        listed = set(manifest["files"]) | {manifest_io.MANIFEST, manifest_io.SIGNATURE}
        extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.relative_to(folder).as_posix() not in listed)
        if extra:
            raise BundleError(f"{folder}: {extra[0]} is not listed in {manifest_io.MANIFEST}")
        signed = (folder / manifest_io.SIGNATURE).is_file()
        if public_key is None:
            return manifest, "not checked" if signed else "absent"
        verify_folder(folder, public_key)
        return manifest, "verified"
    except BundleError as e:
        raise GateError(f"verification failed: {e}") from None


def verify(*, bundle: str | os.PathLike, public_key: str | os.PathLike | None = None) -> VerifyResult:
    """``bundle``: a .edgepkg, or an installed version folder. Exit-code contract: UsageError (2)
    for what is not a bundle or key; GateError (1) when it fails verification (tampered, truncated,
    wrong key, expired)."""
    bundle = Path(bundle)
    if public_key is not None and not Path(public_key).is_file():
        raise UsageError(f"no such public key: {public_key}")
    if bundle.is_dir():
        manifest, state = _verify_folder(bundle, public_key)
    else:
        check_bundle_path(bundle)
        from edgeopt.bundle.delta import read_head

        head, is_delta = read_head(bundle)
        if is_delta:
            base = head["bundle"]["base"]
            raise UsageError(f"{bundle.name} is a delta bundle against {base.get('name')} {base.get('version')}: its "
                             "files are checked when `edgeopt install` rebuilds them onto that version; verify the "
                             "installed result (edgeopt verify DEST/NAME) or a full bundle")
        tmp = Path(tempfile.mkdtemp(prefix="edgeopt-verify-"))
        try:
            manifest, state = unpack_checked(bundle, tmp, public_key)
        except BundleError as e:
            raise GateError(f"verification failed: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    info = manifest.get("bundle") or {}
    if expired(info.get("expires")):
        raise GateError(f"verification failed: {bundle.name} expired on {info['expires']}; package a fresh bundle")
    files = manifest["files"]
    arts = [{k: a.get(k) for k in ("path", "format", "precision", "runtimes")} for a in manifest.get("artifacts", [])]
    return VerifyResult(bundle, (manifest.get("model") or {}).get("name", "?"), manifest.get("version"), state,
                        len(files), sum(f["bytes"] for f in files.values()), arts, info.get("expires"),
                        info.get("signer"), manifest.get("evidence") or {})

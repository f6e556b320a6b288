"""The bundle manifest as the device reads it: ``manifest.json`` plus its ``files`` table.

A bundle's manifest is the export's (DESIGN.md) plus ``version``, ``files`` (path -> sha256 and
bytes, every file of the bundle but manifest.json and model.sig), ``health`` (golden inputs and
outputs with their tolerance) and ``evidence``. The signature covers manifest.json, so once it is
verified, checking each file against ``files`` is checking it against the signer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from edgeopt.runtime.errors import BundleError

MANIFEST = "manifest.json"
SIGNATURE = "model.sig"
SCHEMA = 1
MAX_MANIFEST_BYTES = 16 << 20


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_safe_relpath(name: str) -> bool:
    """A relative POSIX path inside the bundle: no absolute path, no '..', no empty or odd parts."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    parts = PurePosixPath(name).parts
    return bool(parts) and all(p not in ("..", ".", "") for p in parts) and not parts[0].endswith(":")


def parse(data: bytes, where: str) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise BundleError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BundleError(f"{where} is not an edgeopt manifest of schema {SCHEMA}")
    files = manifest.get("files")
    if files is not None:
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("bytes"), int)
                and isinstance(v.get("sha256"), str) for k, v in files.items()):
            raise BundleError(f"{where}: 'files' must map each path to its sha256 and bytes")
        bad = [k for k in files if not is_safe_relpath(k) or k in (MANIFEST, SIGNATURE)]
        if bad:
            raise BundleError(f"{where} lists an unsafe or reserved path {bad[0]!r}")
    return manifest


def read(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{folder} has no {MANIFEST}: pass a bundle, an installed model or an export folder") \
            from None
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from None
    return parse(data, str(path))


def check_files(folder: str | os.PathLike, manifest: dict, *, hashes: bool) -> None:
    """Every file the manifest lists is there with its size (and, with ``hashes``, its sha256)."""
    folder = Path(folder)
    for rel, entry in (manifest.get("files") or {}).items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except OSError:
            raise BundleError(f"{folder}: {rel} is missing (listed in {MANIFEST})") from None
        if size != entry["bytes"]:
            raise BundleError(f"{folder}: {rel} has {size} bytes, the manifest says {entry['bytes']} "
                              "(truncated or tampered)")
        if hashes and sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{folder}: {rel} does not match its sha256 in {MANIFEST} (tampered or corrupt)")

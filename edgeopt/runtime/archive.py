"""Safe extraction of a bundle (a tar archive) into an empty folder.

Accepted members are regular files and folders with relative names that stay inside the folder
(no absolute paths, no '..', no symlinks, hard links, devices or FIFOs), each file listed in the
manifest's ``files`` with exactly its size, and its sha256 checked while it is written. Limits stop
decompression bombs and oversized bundles: member count, manifest and signature size, the total
(``max_bytes``) and the free space under the destination. A truncated archive or a short member is
an error, never a partial success. stdlib only: the device runtime uses it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path

from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.durable import fsync_dir
from edgeopt.runtime.manifest import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, is_safe_relpath, parse

MAX_MEMBERS = 10_000
MAX_SIGNATURE_BYTES = 1 << 20
DEFAULT_MAX_BYTES = 16 << 30  # 16 GiB uncompressed
FREE_SPACE_MARGIN = 16 << 20
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


class NoSpaceError(BundleError):
    """The destination's file system cannot hold the bundle (checked up front, or ENOSPC mid-way)."""


def _members(tar: tarfile.TarFile, bundle: Path) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    while True:
        member = tar.next()
        if member is None:
            break
        if len(found) >= MAX_MEMBERS:
            raise BundleError(f"{bundle} has more than {MAX_MEMBERS} members; not an edgeopt bundle")
        name = member.name[2:] if member.name.startswith("./") else member.name
        name = name.rstrip("/") if member.isdir() else name
        if not is_safe_relpath(name):
            raise BundleError(f"{bundle}: unsafe member path {member.name!r} (absolute or '..'); refusing it")
        if not (member.isreg() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "device or special file"
            raise BundleError(f"{bundle}: member {member.name!r} is a {kind}; bundles hold regular files only")
        if name in found:
            raise BundleError(f"{bundle}: member {name!r} appears twice")
        found[name] = member
    files = {n for n, m in found.items() if m.isreg()}
    for name in found:
        parts = name.split("/")
        clash = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in files), None)
        if clash:
            raise BundleError(f"{bundle}: {clash!r} is both a file and the folder of {name!r}")
    return found


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, bundle: Path) -> bytes:
    if member.size > limit:
        raise BundleError(f"{bundle}: {member.name} is {member.size} bytes, more than the {limit} allowed")
    f = tar.extractfile(member)
    data = f.read() if f is not None else b""
    if len(data) != member.size:
        raise BundleError(f"{bundle} is truncated (member {member.name} is short)")
    return data


def _copy(tar, member, target: Path, expected: dict, bundle: Path, durable: bool) -> None:
    src = tar.extractfile(member)
    h, done = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        while done < member.size:
            try:
                block = src.read(min(1 << 20, member.size - done))
            except _READ_ERRORS as e:
                raise BundleError(f"{bundle} is truncated or corrupt ({type(e).__name__})") from None
            if not block:
                raise BundleError(f"{bundle} is truncated (member {member.name} is short)")
            h.update(block)
            done += len(block)
            out.write(block)
        out.flush()
        if durable:
            os.fsync(out.fileno())
    if h.hexdigest() != expected["sha256"]:
        raise BundleError(f"{bundle}: {member.name} does not match its sha256 in {MANIFEST} (tampered or corrupt)")


def extract(bundle: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
            durable: bool = False) -> tuple[dict, bool]:
    """Extract ``bundle`` into the empty folder ``dest``; returns (manifest, has a signature).

    Every file is checked against the manifest's ``files`` (size and sha256); the signature is not
    checked here (edgeopt.bundle.sign does it on the extracted folder). ``durable`` fsyncs files and
    folders so that a power cut after return cannot lose them.
    """
    bundle, dest = Path(bundle), Path(dest)
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = _members(tar, bundle)
            if MANIFEST not in members or not members[MANIFEST].isreg():
                raise BundleError(f"{bundle} has no {MANIFEST}; not an edgeopt bundle")
            manifest = parse(_read_member(tar, members[MANIFEST], MAX_MANIFEST_BYTES, bundle),
                             f"{bundle}:{MANIFEST}")
            files = manifest.get("files")
            if files is None:
                raise BundleError(f"{bundle}:{MANIFEST} has no 'files' table; re-run `edgeopt package`")
            signed = SIGNATURE in members
            if signed:
                _read_member(tar, members[SIGNATURE], MAX_SIGNATURE_BYTES, bundle)
            for name, member in members.items():
                if member.isreg() and name not in (MANIFEST, SIGNATURE):
                    if name not in files:
                        raise BundleError(f"{bundle}: {name} is not listed in {MANIFEST} (tampered bundle)")
                    if member.size != files[name]["bytes"]:
                        raise BundleError(f"{bundle}: {name} has {member.size} bytes, {MANIFEST} says "
                                          f"{files[name]['bytes']} (tampered bundle)")
            missing = [n for n in files if n not in members]
            if missing:
                raise BundleError(f"{bundle}: {MANIFEST} lists {missing[0]}, which the bundle does not contain")
            total = sum(e["bytes"] for e in files.values())
            if total > max_bytes:
                raise BundleError(f"{bundle} would unpack to {total} bytes, more than the limit of {max_bytes}")
            free = shutil.disk_usage(dest).free
            if free < total + FREE_SPACE_MARGIN:
                raise NoSpaceError(f"no space left: {bundle.name} needs {(total >> 20) + 16} MiB, "
                                   f"{free >> 20} MiB free under {dest.parent}; free some space and retry")
            folders = {dest}
            for name, member in members.items():
                target = dest / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    folders.add(target)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target.parent)
                if name in (MANIFEST, SIGNATURE):
                    data = _read_member(tar, member, MAX_MANIFEST_BYTES, bundle)
                    expected = {"sha256": hashlib.sha256(data).hexdigest()}
                else:
                    expected = files[name]
                _copy(tar, member, target, expected, bundle, durable)
    except _READ_ERRORS as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")
        raise BundleError(f"{bundle} is not a readable bundle: truncated, or not a tar archive ({first})") from None
    except OSError as e:
        if e.errno in (27, 28, 122):  # EFBIG (a file size limit), ENOSPC, EDQUOT
            raise NoSpaceError(f"no space left on the device while unpacking {bundle.name} into {dest.parent}; "
                               "free some space and retry") from None
        if e.filename is None or str(e.filename) == str(bundle):
            raise BundleError(f"cannot read {bundle}: {e.strerror or e}") from None
        raise
    if durable:
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
    return manifest, signed

"""fsync helpers: what makes an unpacked, installed or packaged file survive a power cut. One copy
for the device (archive.py's extraction) and the build side (bundle packaging, install's links)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (a rename, a new file or link in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Make a file written and closed elsewhere (by tarfile, say) durable."""
    with open(Path(path), "rb+") as f:
        os.fsync(f.fileno())

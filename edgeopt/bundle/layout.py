"""The install folder: ``DEST/<name>/<version>/`` (exactly the signed files), ``current`` and
``previous`` symlinks switched by rename, ``.cache/<version>/`` for install-time preparation.

Crash safety: a version folder appears only by renaming a fully extracted, verified and fsynced
staging folder; links change only by renaming a new link over the old one (atomic on POSIX); a
folder is deleted only after renaming it to ``.trash-*``. So at every instant ``current`` names a
complete version, whatever moment a process dies or power fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from pathlib import Path

from edgeopt.runtime.durable import fsync_dir

LOCK = ".edgeopt.lock"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
CURRENT, PREVIOUS, CACHE = "current", "previous", ".cache"


@contextlib.contextmanager
def locked(dest: Path):
    """One installer per DEST at a time; the kernel drops the lock when a process dies."""
    fd = os.open(dest / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clean_stale(dest: Path) -> None:
    """Leftovers of an installer that died (we hold the lock, so none is running)."""
    for p in dest.iterdir():
        if p.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
            for q in [*p.iterdir(), *((p / CACHE).iterdir() if (p / CACHE).is_dir() else [])]:
                if q.name.startswith(TRASH_PREFIX):
                    shutil.rmtree(q, ignore_errors=True)
                elif q.name.startswith(".link-"):
                    q.unlink(missing_ok=True)


def link_target(model_dir: Path, name: str) -> str | None:
    """The version a link names, or None when there is no such link."""
    link = model_dir / name
    return os.readlink(link) if link.is_symlink() else None


def set_link(model_dir: Path, name: str, version: str) -> None:
    tmp = model_dir / f".link-{name}-{uuid.uuid4().hex[:8]}"
    os.symlink(version, tmp)  # relative: the install folder can move as a whole
    os.replace(tmp, model_dir / name)
    fsync_dir(model_dir)


def remove(path: Path) -> None:
    """Delete a folder without ever leaving a half-deleted one under its own name."""
    if not path.exists():
        return
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def prune(model_dir: Path) -> list[str]:
    """Remove versions (and caches) that are neither current nor previous."""
    keep = {link_target(model_dir, CURRENT), link_target(model_dir, PREVIOUS)}
    removed = []
    for p in model_dir.iterdir():
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name not in keep:
            remove(p)
            removed.append(p.name)
    cache = model_dir / CACHE
    if cache.is_dir():
        for p in cache.iterdir():
            if p.name not in keep and not p.name.startswith("."):
                remove(p)
    return removed

"""Write artifacts to a temporary sibling and rename, so a failed run leaves nothing half-written."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from edgeopt.errors import UsageError

_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def output_dir(out: str | os.PathLike, *, marker: str = "manifest.json"):
    """Yield a fresh staging folder; on success it replaces ``out``, on any error it is removed.

    An existing ``out`` is replaced only when it holds ``marker`` (an earlier edgeopt output) or is
    empty, so a typo in ``-o`` cannot wipe an unrelated folder.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"-o {out} is a file; give a folder path")
        if any(out.iterdir()) and not (out / marker).exists():
            raise UsageError(f"-o {out} exists and is not an edgeopt output; choose another folder or empty it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:  # read-only mount, a file in the path, /proc, no permission, no space
        blocker = next((p for p in out.parents if p.exists()), None)
        reason = (f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir()
                  else f"{e.strerror or type(e).__name__} ({e.filename or out.parent})")
        raise UsageError(f"cannot write -o {out}: {reason}; choose a writable folder") from None
    try:
        yield stage
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        if e.errno in _ENVIRONMENT_ERRNOS:  # the disk, not edgeopt: say so in one line (exit 2)
            raise UsageError(f"writing {out} failed: {e.strerror} ({e.filename or stage}); "
                             "free space or choose another folder") from None
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
    os.rename(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)



@contextlib.contextmanager
def try_lock(path: str | os.PathLike):
    """Yield whether this process holds the lock on ``path`` (created if missing), without waiting:
    a second run on the same folder is told at once. The kernel drops the lock when a process dies,
    so a killed run never leaves a folder locked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)

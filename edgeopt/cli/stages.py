"""One line per stage with the seconds elapsed, on stderr: with -v, and always when stderr is not a
terminal (a CI log, a pipe), where progress bars and spinners draw nothing and a 90-second command
would otherwise print nothing until it ends."""

from __future__ import annotations

import sys
import time
from typing import Callable


def stage_log(con, verbose: bool, also: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """``log(msg)`` for a command: ``also`` (e.g. a spinner's update) gets every message too."""
    t0 = time.perf_counter()
    lines = verbose or not sys.stderr.isatty()

    def log(msg: str) -> None:
        if also is not None:
            also(msg)
        if lines:
            con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)

    return log

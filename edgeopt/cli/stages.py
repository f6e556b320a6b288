"""One line per stage with the seconds elapsed: on stderr with -v, and on stdout when stdout is not a
terminal (a CI log, a pipe) and carries no JSON, where progress bars and spinners draw nothing and a
90-second command would otherwise print nothing until it ends. stdout, not stderr: a bad input stays
the one line on stderr, whenever it is found."""

from __future__ import annotations

import sys
import time
from typing import Callable


def stage_log(con, verbose: bool, *, stdout_free: bool = True,
              also: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """``log(msg)`` for a command: ``also`` (e.g. a spinner's update) gets every message too;
    ``stdout_free``: False when stdout holds the command's JSON."""
    t0 = time.perf_counter()
    to_stdout = not verbose and stdout_free and not sys.stdout.isatty()

    def log(msg: str) -> None:
        if also is not None:
            also(msg)
        if verbose:
            con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)
        elif to_stdout:
            print(f"{time.perf_counter() - t0:6.1f} s  {msg}", flush=True)

    return log

"""Side-by-side latency by interleaved bursts: each candidate in its own persistent process.

Sessions sharing a process disturb each other through their thread pools, so every candidate gets
a process of its own. Timing them one process after another leaves them exposed to a shared
machine's drift (here, 20-40 % within a minute). So all candidate processes are started once, load
(and warm up) side by side, and stay loaded. The parent then asks each in turn, in an order
rotated every round, for a short burst of timed runs, and only one process works at a time. Each
round's ratios compare bursts taken seconds apart, and the medians of per-round ratios are what
the benchmarks report.

Child side: build a zero-argument ``run`` callable, then call :func:`serve`.
Parent side: :func:`interleaved` with one command line per candidate.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

READY = "edgeopt-interleave-ready"
TIMES = "edgeopt-interleave-times "


def serve(run: Callable[[], object], *, warmup: int = 20) -> None:
    """Child loop: warm up, say ready, then answer ``N`` on stdin with the N timings (ms) as JSON."""
    for _ in range(warmup):
        run()
    print(READY, flush=True)
    for line in sys.stdin:
        n = int(line.strip() or 0)
        if n <= 0:
            break
        times = []
        for _ in range(n):
            t = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - t) / 1e6)
        print(TIMES + json.dumps(times), flush=True)


class _Child:
    def __init__(self, name: str, argv: list[str], env: dict | None):
        self.name = name
        # stderr to a file, not a pipe nobody reads: a chatty child would block on a full pipe
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=env)

    def read_line(self) -> str:
        """The next protocol line; anything else the child prints on stdout is skipped."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.stderr.seek(0)
                err = self.stderr.read()[-2000:].strip()
                raise RuntimeError(f"{self.name}: the timing process ended early: {err}")
            if line.startswith(READY):
                return line
            if line.startswith(TIMES):
                return line[len(TIMES):]

    def burst(self, runs: int) -> list[float]:
        self.proc.stdin.write(f"{runs}\n")
        self.proc.stdin.flush()
        return json.loads(self.read_line())

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("0\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        finally:
            self.stderr.close()


def interleaved(commands: dict[str, list[str]], *, rounds: int = 20, runs: int = 50, env: dict | None = None,
                pause_s: float = 0.05, progress: Callable[[int, dict], None] | None = None,
                until: Callable[[dict[str, list[float]]], bool] | None = None) -> dict[str, list[float]]:
    """{name: [p50 ms of each round]}: every candidate's process started once, then ``rounds``
    rounds of one ``runs``-call burst each, in rotated order, with ``pause_s`` between bursts so
    spinning thread pools go idle before the next candidate runs. ``until`` (optional) is asked
    after each round with the rounds so far and ends the timing early when it returns True."""
    children: list[_Child] = []
    try:
        for name, argv in commands.items():  # all load at once; timing starts when every one is ready
            children.append(_Child(name, argv, env))
        for child in children:
            child.read_line()
        per: dict[str, list[float]] = {c.name: [] for c in children}
        for r in range(rounds):
            k = r % len(children)
            for child in children[k:] + children[:k]:
                time.sleep(pause_s)
                per[child.name].append(statistics.median(child.burst(runs)))
            if progress is not None:
                progress(r, {n: v[-1] for n, v in per.items()})
            if until is not None and until(per):
                break
        return per
    finally:
        for child in children:
            child.close()


def ratios(per_round: dict[str, list[float]], baseline: str | list[str]) -> dict[str, float]:
    """Median over rounds of each candidate's p50 divided by the baseline's (or by the fastest of
    several baselines) in the same round."""
    names = [baseline] if isinstance(baseline, str) else baseline
    n = len(next(iter(per_round.values())))
    base = [min(per_round[b][i] for b in names) for i in range(n)]
    return {name: statistics.median(v[i] / base[i] for i in range(n)) for name, v in per_round.items()}

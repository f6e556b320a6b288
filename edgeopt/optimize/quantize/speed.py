"""Side-by-side latency of INT8 candidates for ``--int8-mode auto``: each candidate in its own
process (sessions in one process disturb each other's thread pools), in rotated rounds.

Child usage: python -m edgeopt.optimize.quantize.speed ARTIFACT RUNTIME PRECISION FEEDS.npz RUNS THREADS
prints the median latency in ms.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _child(path, runtime, precision, feeds_path, runs, threads) -> None:
    from edgeopt.runtimes import get_runtime

    feeds = dict(np.load(feeds_path))
    session = get_runtime(runtime).load(path, threads=int(threads) or None, precision=precision)
    for _ in range(10):
        session.run(feeds)
    times = []
    for _ in range(int(runs)):
        t = time.perf_counter_ns()
        session.run(feeds)
        times.append((time.perf_counter_ns() - t) / 1e6)
    print(statistics.median(times))


def compare_latency(candidates: list[tuple[str, str, str]], feeds: dict[str, np.ndarray], *,
                    rounds: int = 3, runs: int = 100, threads: int = 0) -> dict[str, float]:
    """{artifact path: median of per-round p50 ms}; candidates are (path, runtime, precision)."""
    per: dict[str, list[float]] = {c[0]: [] for c in candidates}
    with tempfile.TemporaryDirectory() as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)
        for r in range(rounds):
            order = candidates[r % len(candidates):] + candidates[:r % len(candidates)]
            for path, runtime, precision in order:
                out = subprocess.run([sys.executable, "-m", "edgeopt.optimize.quantize.speed", path, runtime,
                                      precision, str(feeds_path), str(runs), str(threads)],
                                     capture_output=True, text=True, check=True)
                per[path].append(float(out.stdout.strip().splitlines()[-1]))
    return {p: statistics.median(v) for p, v in per.items()}


if __name__ == "__main__":
    _child(*sys.argv[1:7])

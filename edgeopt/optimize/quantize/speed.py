"""Side-by-side latency of INT8 candidates for ``--int8-mode auto``: each candidate in its own
persistent process, timed in interleaved bursts (edgeopt/bench/interleave.py).

Child usage: python -m edgeopt.optimize.quantize.speed ARTIFACT RUNTIME PRECISION FEEDS.npz THREADS
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np


def _child(path, runtime, precision, feeds_path, threads) -> None:
    from edgeopt.bench.interleave import serve
    from edgeopt.runtimes import get_runtime

    feeds = dict(np.load(feeds_path))
    session = get_runtime(runtime).load(path, threads=int(threads) or None, precision=precision)
    serve(lambda: session.run(feeds), warmup=10)


def settled(baseline: str | None, threshold: float, *, min_rounds: int = 4, margin: float = 1.1):
    """A stop rule for interleaved(): the verdicts can no longer change.

    True after at least ``min_rounds`` rounds when each candidate's p50 over the ``baseline``'s
    (None: no baseline) lies on the same side of ``threshold`` in every round so far, with their
    median clear of it by a factor of ``margin`` (e.g. <= 0.86x or >= 1.05x for 0.95x), and the
    candidates rank in the same order of speed in every round (then the medians of their rounds
    rank so too). A candidate near the threshold, or two close to each other, get all the rounds."""

    def until(per: dict[str, list[float]]) -> bool:
        n = min(len(v) for v in per.values())
        if n < min_rounds:
            return False
        names = [name for name in per if name != baseline]
        if baseline is not None:
            for name in names:
                r = [per[name][i] / per[baseline][i] for i in range(n)]
                mid = statistics.median(r)
                if not (max(r) <= threshold and mid * margin <= threshold
                        or min(r) > threshold and mid >= threshold * margin):
                    return False
        return len({tuple(sorted(names, key=lambda c: per[c][i])) for i in range(n)}) == 1

    return until


def compare_latency(candidates: list[tuple[str, str, str]], feeds: dict[str, np.ndarray], *,
                    rounds: int = 10, runs: int = 30, threads: int = 0, until=None) -> dict[str, float]:
    """{artifact path: median of per-round p50 ms}; candidates are (path, runtime, precision);
    ``until`` (e.g. settled()) may end the timing before ``rounds`` rounds."""
    from edgeopt.bench.interleave import interleaved

    with tempfile.TemporaryDirectory() as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)
        commands = {path: [sys.executable, "-m", "edgeopt.optimize.quantize.speed", path, runtime, precision,
                           str(feeds_path), str(threads)] for path, runtime, precision in candidates}
        per = interleaved(commands, rounds=rounds, runs=runs, until=until)
    return {p: statistics.median(v) for p, v in per.items()}


if __name__ == "__main__":
    _child(*sys.argv[1:6])

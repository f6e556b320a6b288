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


def compare_latency(candidates: list[tuple[str, str, str]], feeds: dict[str, np.ndarray], *,
                    rounds: int = 10, runs: int = 30, threads: int = 0) -> dict[str, float]:
    """{artifact path: median of per-round p50 ms}; candidates are (path, runtime, precision)."""
    from edgeopt.bench.interleave import interleaved

    with tempfile.TemporaryDirectory() as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)
        commands = {path: [sys.executable, "-m", "edgeopt.optimize.quantize.speed", path, runtime, precision,
                           str(feeds_path), str(threads)] for path, runtime, precision in candidates}
        per = interleaved(commands, rounds=rounds, runs=runs)
    return {p: statistics.median(v) for p, v in per.items()}


if __name__ == "__main__":
    _child(*sys.argv[1:6])

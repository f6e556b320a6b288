"""Side-by-side latency of INT8 candidates for ``--int8-mode auto``: each candidate in its own
persistent process, timed in interleaved bursts (edgeopt/bench/interleave.py); the speed check
that keeps an INT8 artifact only when it beats FP32 on this machine.

Child usage: python -m edgeopt.optimize.quantize.speed ARTIFACT RUNTIME PRECISION FEEDS.npz THREADS
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.quantize.candidate import Int8Candidate


def _child(path, runtime, precision, feeds_path, threads) -> None:
    from edgeopt.bench.interleave import serve
    from edgeopt.backends import get_runtime

    feeds = dict(np.load(feeds_path))
    session = get_runtime(runtime).load(path, threads=int(threads) or None, precision=precision)
    serve(lambda: session.run(feeds), warmup=10)


def settled(baseline: str | None, threshold: float, *, min_rounds: int = 4, margin: float = 1.1):
    """A stop rule for interleaved(): the verdicts are settled.

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


# An INT8 artifact is kept only at <= this share of FP32's p50 on one held-out sample: that
# sample is a proxy for the real workload, and near 1.0 the proxy's verdict can flip (the demo's
# OpenVINO INT8 read 0.966x FP32 on one title, 1.2x in the demo's own benchmark, AMD EPYC, no VNNI).
MIN_SPEEDUP = 0.95


def p50(runs: list[tuple[str, str, str]], evald: Dataset, threads, fp32: str | None = None,
         threshold: float = MIN_SPEEDUP) -> dict[str, float]:
    """Side-by-side p50 (ms) of (path, runtime, precision) runs on one evaluation sample. The timing
    stops early once the verdicts are settled (settled()): each run's p50 over ``fp32``'s on one
    side of ``threshold`` in every round, and the runs in one order of speed."""
    return compare_latency(runs, next(evald.batches(1))[0], threads=threads or 0,
                           until=settled(fp32, threshold))


def vs_fp32(path: Path, fp32: Path, evald: Dataset, threads, log, runtime: str = "onnxruntime",
             threshold: float = MIN_SPEEDUP) -> float:
    """p50 of ``path`` over p50 of ``fp32``, side by side in one timing run, which ends early when
    the ratio is clearly on one side of ``threshold``."""
    log(f"timing {path.name} against FP32")
    p50s = p50([(str(path), runtime, "int8"), (str(fp32), runtime, "fp32")], evald, threads, fp32=str(fp32),
               threshold=threshold)
    return p50s[str(path)] / p50s[str(fp32)]


def decisive(ratio: float, threshold: float = MIN_SPEEDUP) -> str:
    """``ratio`` with the fewest digits (at least 2) that tell it from ``threshold``: 0.954 next to
    0.95 is "0.954", not "0.95"."""
    for digits in range(2, 7):
        if round(ratio, digits) != threshold:
            return f"{ratio:.{digits}f}"
    return repr(ratio)


def not_faster(ratio: float) -> str:
    return f"not faster than FP32 ({decisive(ratio)}x, needs <= {MIN_SPEEDUP}x)"


def fastest(passing: list[Int8Candidate], evald: Dataset, threads, log,
            fp32: Path | None = None) -> Int8Candidate | None:
    """The fastest passing candidate, timed side by side with ``fp32`` (same runtime, same run).

    A candidate slower than MIN_SPEEDUP x FP32 here is dropped: an INT8 artifact that runs slower
    than the FP32 one is not worth shipping. Seen for MiniLM: OpenVINO static INT8 on a CPU
    without VNNI (AVX2 only) ran 1.39x its FP32 IR, and in ONNX Runtime the float islands of a
    static model with 17 FP32 nodes cost more than INT8 saved (1.2x FP32 at 64 tokens). ``fp32``
    None (``--no-speed-check``) keeps the fastest passing candidate whatever its speed against
    FP32, e.g. when the devices have VNNI and the exporting machine has not."""
    if not passing:
        return None
    if len(passing) == 1 and fp32 is None:
        return passing[0]
    log(f"timing {len(passing)} passing candidate(s) side by side" + (" and FP32" if fp32 is not None else ""))
    runs = [(str(c.path), c.runtime, "int8") for c in passing]
    if fp32 is not None:
        runs.append((str(fp32), passing[0].runtime, "fp32"))
    p50s = p50(runs, evald, threads, fp32=None if fp32 is None else str(fp32))
    for c in passing:
        c.p50_ms = round(p50s[str(c.path)], 3)
    if fp32 is not None:
        base = p50s[str(fp32)]
        for c in passing:
            c.vs_fp32 = round(c.p50_ms / base, 3)
            if c.p50_ms > MIN_SPEEDUP * base:  # it still passed the quality gate: "rejected" says why
                islands = f" with {len(c.fallback_nodes)} FP32 nodes" if c.fallback_nodes else ""
                c.rejected = f"{not_faster(c.p50_ms / base)}{islands} on this machine"
                log(f"{c.name}: {c.rejected}: not kept")
        passing = [c for c in passing if not c.rejected]
    return min(passing, key=lambda c: c.p50_ms) if passing else None


if __name__ == "__main__":
    _child(*sys.argv[1:6])

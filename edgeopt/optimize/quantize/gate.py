"""The accuracy gate: quantize, measure against the FP32 source on held-out data, and return the
most sensitive nodes to FP32 until ``--max-drop`` holds (or give up, keeping FP32).

Search over k = how many of the ranked nodes stay FP32: 0, 1, 2, 4, ... until the gate passes,
then bisect between the last failure and the first pass, so the fallback is as small as the
ranking allows. Calibration ranges are computed once and cached across attempts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.metrics import Quality, evaluate


@dataclass
class Candidate:
    name: str  # static | dynamic | openvino
    path: Path
    runtime: str
    quality: Quality | None = None
    fallback_nodes: list[str] = field(default_factory=list)
    passed: bool = False
    seconds: float = 0.0
    attempts: int = 0
    p50_ms: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "path": self.path.name, "runtime": self.runtime, "passed": self.passed,
                "quality": self.quality.to_json() if self.quality else None,
                "fallback_nodes": self.fallback_nodes, "seconds": round(self.seconds, 2),
                "attempts": self.attempts, "p50_ms": self.p50_ms, **self.extra}


class Scorer:
    """Runs a model over the evaluation batches and scores it against the FP32 reference."""

    def __init__(self, data: Dataset, output: str, metric: str, passes: Callable[[Quality], bool],
                 batch_size: int = 32, threads: int | None = None):
        self.data, self.output, self.metric, self.passes = data, output, metric, passes
        self.batch_size, self.threads = batch_size, threads
        self.labels = data.labels
        self.reference: np.ndarray | None = None
        self._batches: list | None = None  # decoded once (images decode lazily), reused per attempt

    def outputs(self, path: Path, runtime: str = "onnxruntime", precision: str = "fp32") -> np.ndarray:
        from edgeopt.runtimes import get_runtime

        if self._batches is None:
            self._batches = [feeds for feeds, _ in self.data.batches(self.batch_size)]
        session = get_runtime(runtime).load(str(path), threads=self.threads, precision=precision)
        return np.concatenate([session.run(feeds)[self.output] for feeds in self._batches])

    def set_reference(self, fp32: Path) -> None:
        self.reference = self.outputs(fp32)

    def evaluate(self, outputs: np.ndarray) -> Quality:
        """``outputs`` (one row per evaluation sample, in order) scored against the reference."""
        return evaluate(self.metric, self.reference, outputs, self.labels)

    def __call__(self, path: Path, runtime: str = "onnxruntime", precision: str = "int8") -> Quality:
        return self.evaluate(self.outputs(path, runtime, precision))


def fallback_search(build: Callable[[list[str]], Path], score: Callable[[Path], Quality],
                    passes: Callable[[Quality], bool], ranking: list[str], limit: int,
                    log: Callable[[str], None] = lambda m: None,
                    tried: dict[int, tuple[Path, Quality]] | None = None,
                    ) -> tuple[int | None, dict[int, tuple[Path, Quality]]]:
    """Smallest k such that keeping ranking[:k] in FP32 passes; (None, tried) when even k=limit fails.
    ``tried`` may already hold attempts (k -> (path, quality)), which are not repeated."""
    tried = dict(tried or {})

    def attempt(k: int) -> bool:
        if k in tried:
            return passes(tried[k][1])
        path = build(ranking[:k])
        q = score(path)
        tried[k] = (path, q)
        log(f"INT8 with the {k} most sensitive node(s) in fallback: {q.metric} {q.value:.4f} (drop {q.drop:.4f})")
        return passes(q)

    if attempt(0):
        return 0, tried
    lo, hi, k = 0, None, 1
    while k <= limit:
        if attempt(k):
            hi = k
            break
        lo, k = k, k * 2
    if hi is None:
        if limit > lo and attempt(limit):
            hi = limit
        else:
            return None, tried
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    return hi, tried


def gated(name: str, runtime: str, build, score, passes, ranking_fn, n_nodes: int, max_fallback: float,
          log, viable: Callable[[Path], str | None] | None = None) -> Candidate:
    """Run the fallback search for one backend and keep only the chosen file.

    ``viable`` (optional) looks at the all-INT8 model when it fails the gate and returns why a
    fallback search would be pointless (e.g. it is already slower than FP32, and FP32 nodes only
    add to that), or None to go on."""
    t0 = time.perf_counter()
    ranking: list[str] = []
    first = build([])
    q0 = score(first)
    log(f"{name}: INT8 everywhere: {q0.metric} {q0.value:.4f} (drop {q0.drop:.4f})")
    tried = {0: (first, q0)}
    k = 0 if passes(q0) else None
    reason = viable(first) if k is None and viable is not None else None
    if reason:
        log(f"{name}: {reason}: no fallback search")
        first.unlink(missing_ok=True)
        return Candidate(name, first, runtime, q0, [], False, time.perf_counter() - t0, attempts=1,
                         extra={"quantizable_nodes": n_nodes, "skipped": reason})
    if k is None:
        ranking = ranking_fn(first)
        limit = max(1, int(len(ranking) * max_fallback))
        k, tried = fallback_search(build, score, passes, ranking, limit, log, tried)
    chosen = k if k is not None else min(tried, key=lambda i: tried[i][1].drop)
    for i, (path, _) in tried.items():
        if i != chosen and path != tried[chosen][0]:
            path.unlink(missing_ok=True)
    path, q = tried[chosen]
    return Candidate(name, path, runtime, q, ranking[:chosen], passes(q), time.perf_counter() - t0,
                     attempts=len(tried), extra={"quantizable_nodes": n_nodes})

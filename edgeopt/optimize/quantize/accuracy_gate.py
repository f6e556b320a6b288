"""The accuracy gate: quantize, measure against the FP32 source on held-out data, and return the
most sensitive nodes to FP32 until ``--max-drop`` holds (or give up, keeping FP32).

Search over k = how many of the ranked nodes stay FP32: 0, 1, 2, 4, ... until the gate passes,
then bisect between the last failure and the first pass, so the fallback is as small as the
ranking allows. Calibration ranges are computed once and cached across attempts. With the cosine
metric, an attempt stops scoring as soon as it certainly fails (Scorer.screen).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.optimize.metrics import Quality, cosines, evaluate
from edgeopt.optimize.quantize.candidate import Int8Candidate


REFERENCE_BATCH = 64  # samples of one shape per call for the FP32 reference (Scorer.set_reference)
MASK_INPUT = "attention_mask"


def comparable_rows(out: np.ndarray, feeds: dict[str, np.ndarray], text: bool = False) -> np.ndarray:
    """``out`` as the rows the metrics compare. An output with a sequence axis (a transformer's
    ``last_hidden_state`` [batch, tokens, hidden]) has one row per real token: positions the
    attention mask marks as padding are left out, and samples of different lengths line up (their
    outputs cannot be stacked whole). Other outputs: one row per sample, as they are."""
    mask = feeds.get(MASK_INPUT)
    if out.ndim >= 3 and mask is not None and mask.shape == out.shape[:2]:
        return out[mask.astype(bool)]
    if out.ndim >= 3 and text:  # no mask: every position is a token
        return out.reshape(-1, *out.shape[2:])
    return out


class Scorer:
    """Runs a model over the evaluation batches and scores it against the FP32 reference.

    Text runs one sample per call (``batch_size`` None), as a store serves a query: dynamic INT8
    quantizes each call's activations as one tensor, so in a batch every title's result depends on
    its batchmates and their padding. MiniLM's kept INT8 read cosine 0.9952 / min 0.9916 on titles
    in batches of 32 and 0.9958 / 0.9927 alone, as the benchmark measures it one title per call
    (0.9958 / 0.9937, docs/PERFORMANCE.md); batches made the gate ask for more per-token nodes than
    the served model needs. Other data runs in batches of 32."""

    def __init__(self, data: Dataset, output: str, metric: str, passes: Callable[[Quality], bool],
                 batch_size: int | None = None, threads: int | None = None, max_drop: float | None = None,
                 min_cosine: float | None = None):
        self.data, self.output, self.metric, self.passes = data, output, metric, passes
        self.batch_size = batch_size or (1 if data.kind == "text" else 32)
        self.threads = threads
        self.max_drop, self.min_cosine = max_drop, min_cosine  # the gate's bounds, for screen()
        self.labels = data.labels
        self.reference: np.ndarray | None = None
        self.baseline: Quality | None = None  # the FP32 model against a reference model (set_reference)
        self.vs = "fp32 source"
        self._batches: list | None = None  # decoded once (images decode lazily), reused per attempt
        self._starts: np.ndarray | None = None  # batch b's rows in the reference: _starts[b]:_starts[b + 1]
        self._hardness: dict[int, float] = {}  # batch -> its lowest cosine in the last screen that ran it

    def _session(self, path: Path, runtime: str, precision: str):
        from edgeopt.backends import get_runtime

        if self._batches is None:
            self._batches = [feeds for feeds, _ in self.data.batches(self.batch_size)]
        return get_runtime(runtime).load(str(path), threads=self.threads, precision=precision)

    def rows(self, out: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The compared rows of the output ``out`` of ``feeds`` (comparable_rows)."""
        return comparable_rows(out, feeds, text=self.data.kind == "text")

    def _per_batch(self, session) -> list[np.ndarray]:
        return [self.rows(session.run(feeds)[self.output], feeds) for feeds in self._batches]

    def outputs(self, path: Path, runtime: str = "onnxruntime", precision: str = "fp32") -> np.ndarray:
        return np.concatenate(self._per_batch(self._session(path, runtime, precision)))

    def screen(self, path: Path, runtime: str = "onnxruntime", precision: str = "int8") -> Quality:
        """The fallback search's score: as ``self(path)``, but with the cosine metric it stops as soon
        as the gate certainly fails, and then returns a partial Quality (details: ``partial``).

        Certainly fails: a sample's cosine is below ``min_cosine`` (the worst can only get worse), or
        the drops (1 - cosine) of the samples run so far add up to more than ``max_drop`` times the
        number of samples (the rest cannot bring the mean back). Batches run hardest first: lowest
        cosine in the last attempt that ran them. The verdict is the one the whole set gives;
        a passing model is always scored on every sample. Batches are the same as in ``outputs``
        (dynamic INT8 quantizes a batch as one tensor), so their outputs are the same too."""
        if self.metric != "cosine" or self.max_drop is None or self.reference is None or self.baseline is not None:
            return self(path, runtime, precision)
        session = self._session(path, runtime, precision)
        starts = self._starts
        total = len(self.reference)
        budget = (self.max_drop + 1e-9) * total  # beyond passes()' 1e-12 and float noise in the mean
        floor = self.min_cosine if self.min_cosine is not None else -np.inf
        outputs: list = [None] * len(self._batches)
        spent, worst, done = 0.0, 1.0, 0
        for b in sorted(range(len(self._batches)), key=lambda i: self._hardness.get(i, 1.0)):
            outputs[b] = self.rows(session.run(self._batches[b])[self.output], self._batches[b])
            cos = cosines(self.reference[starts[b]:starts[b + 1]], outputs[b])
            self._hardness[b] = float(cos.min())
            spent, worst, done = spent + float((1 - cos).sum()), min(worst, float(cos.min())), done + len(cos)
            if done < total and (worst < floor or spent > budget):
                why = (f"a sample's cosine is {worst:.4f} < {floor}" if worst < floor else
                       f"the drops so far exceed {self.max_drop} over all {total} samples")
                return Quality("cosine", 1 - spent / done, 1.0, spent / done,
                               {"mean": 1 - spent / done, "min": worst, "partial": True, "samples": done,
                                "of": total, "stopped": why})
        return self.evaluate(np.concatenate(outputs))

    def set_reference(self, fp32: Path, model: Callable[[dict], np.ndarray] | None = None,
                      name: str | None = None) -> None:
        """The FP32 outputs. Text scored one sample per call runs here in groups of one shape: no
        padding, so each sample's numbers are its own (to float rounding, ~1e-7), in ~25 calls
        instead of 500 for held-out titles. A model that takes no batch of them runs one by one.

        With ``model`` (feeds -> the compared output; e.g. the teacher a distilled student came
        from, called ``name``), candidates are scored against that model instead, and the drop is
        how much further a candidate falls from it than the FP32 model does: a student is not
        failed for being a student, only for what INT8 loses on top."""
        session = self._session(fp32, "onnxruntime", "fp32")
        rows = self._grouped(session) if self.batch_size == 1 and len(self.data) >= 2 else None
        rows = rows if rows is not None else self._per_batch(session)
        self.reference = np.concatenate(rows)
        self._starts = np.cumsum([0] + [len(r) for r in rows])
        if self.labels is not None and len(self.reference) != len(self.labels):
            self.labels = None  # one row per token: per-sample labels do not apply (top1 agreement instead)
        if model is not None:
            fp32_rows = self.reference
            ref = np.concatenate([self.rows(np.asarray(model(feeds)), feeds) for feeds in self._batches])
            if ref.shape != fp32_rows.shape:
                raise UsageError(f"the gate's reference {name or 'model'} gives outputs of shape {ref.shape[1:]} "
                                 f"where this model gives {fp32_rows.shape[1:]}; gate against a model with the "
                                 "same outputs (the teacher of a distilled student)")
            self.reference, self.vs = ref, name or "reference model"
            self.baseline = evaluate(self.metric, ref, fp32_rows, self.labels)

    def _grouped(self, session) -> list[np.ndarray] | None:
        """Each one-sample batch's reference rows, run in groups of one shape; None when the model
        takes no such group (e.g. a fixed batch size of 1)."""
        rows: list = [None] * len(self._batches)
        try:
            for chunk, feeds in self.data.same_shape_batches(REFERENCE_BATCH, self._batches):
                out = session.run(feeds)[self.output]
                if len(out) != len(chunk):
                    raise ValueError(f"{len(chunk)} samples in, {len(out)} rows out")
                for j, i in enumerate(chunk):
                    rows[i] = self.rows(out[j:j + 1], {k: v[j:j + 1] for k, v in feeds.items()})
        except Exception:  # noqa: BLE001 - the plain way, one batch per call
            return None
        return rows

    def evaluate(self, outputs: np.ndarray) -> Quality:
        """``outputs`` (one row per evaluation sample, in order) scored against the reference; with a
        reference model, the drop is the FP32 model's score there minus this one's."""
        q = evaluate(self.metric, self.reference, outputs, self.labels)
        base = self.baseline
        if base is None:
            return q
        lower_better = q.metric in ("mse", "logloss")
        drop = (q.value - base.value) if lower_better else (base.value - q.value)
        return Quality(q.metric, q.value, base.value, drop, {**q.details, "reference_model_score": q.reference,
                                                             "fp32_details": base.details}, vs=self.vs)

    def __call__(self, path: Path, runtime: str = "onnxruntime", precision: str = "int8") -> Quality:
        return self.evaluate(self.outputs(path, runtime, precision))


def describe_score(q: Quality) -> str:
    """A log line's account of a score, partial (Scorer.screen) or not."""
    if q.details.get("partial"):
        return (f"fails: {q.details['stopped']} (stopped after {q.details['samples']} of "
                f"{q.details['of']} samples)")
    return f"{q.metric} {q.value:.4f} (drop {q.drop:.4f})"


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
        log(f"INT8 with the {k} most sensitive node(s) in fallback: {describe_score(q)}")
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


def gated_search(name: str, runtime: str, *, build: Callable[[list[str]], Path], score, passes,
                 ranking_fn: Callable[[Path], list[str]], n_nodes: int, max_fallback: float,
                 log: Callable[[str], None], viable: Callable[[Path], str | None] | None = None) -> Int8Candidate:
    """Run the fallback search for one backend and keep only the chosen file.

    ``viable`` (optional) looks at the all-INT8 model when it fails the gate and returns why a
    fallback search would be pointless (e.g. it is already slower than FP32, and FP32 nodes only
    add to that), or None to go on."""
    t0 = time.perf_counter()
    ranking: list[str] = []
    screen = getattr(score, "screen", score)  # a Scorer stops scoring attempts that certainly fail
    first = build([])
    q0 = screen(first)
    log(f"{name}: INT8 everywhere: {describe_score(q0)}")
    tried = {0: (first, q0)}
    k = 0 if passes(q0) else None
    reason = viable(first) if k is None and viable is not None else None
    if reason:
        log(f"{name}: {reason}: no fallback search")
        first.unlink(missing_ok=True)
        return Int8Candidate(name, first, runtime, q0, [], False, time.perf_counter() - t0, attempts=1,
                             quantizable_nodes=n_nodes, skipped=reason)
    if k is None:
        ranking = ranking_fn(first)
        limit = max(1, int(len(ranking) * max_fallback))
        k, tried = fallback_search(build, screen, passes, ranking, limit, log, tried)
    if k is None and any(q.details.get("partial") for _, q in tried.values()):
        # none passes: the manifest keeps the closest, and partial drops (hard samples first) do not
        # compare, so every attempt is scored on the whole set
        tried = {i: (p, q if not q.details.get("partial") else score(p)) for i, (p, q) in tried.items()}
    chosen = k if k is not None else min(tried, key=lambda i: tried[i][1].drop)
    for i, (path, _) in tried.items():
        if i != chosen and path != tried[chosen][0]:
            path.unlink(missing_ok=True)
    path, q = tried[chosen]
    return Int8Candidate(name, path, runtime, q, ranking[:chosen], passes(q), time.perf_counter() - t0,
                         attempts=len(tried), quantizable_nodes=n_nodes)

"""The report's measurements: every variant of the chain side by side on the deploy runtime.

Variants: the teacher exported to FP32 ONNX, the teacher's stock INT8 (onnxruntime's
``quantize_dynamic``, what a user gets without edgeopt), each model a step wrote (exported to FP32
ONNX for the comparison) and every ONNX artifact of each export step. Quality is scored on the
recipe's held-out data, one sample per call as a store serves them, against the teacher: with
judgments, a store search (each judged query against the judged products plus the held-out texts:
Recall@10); for labelled classifiers, top-1; otherwise the mean cosine to the teacher's output.
Latency is one interleaved run (edgeopt/bench/interleave.py): every variant in its own process,
batch 1, rounds rotated, ratios taken round by round.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.recipe import cache as cache_mod

RUNTIME = "onnxruntime"
THREADS = 2


@dataclass
class Variant:
    name: str
    onnx: Path
    precision: str
    folder: Path  # the export folder it came from (tokenizer/, manifest.json)
    step: str  # the step label that made it, or "teacher"
    final_candidate: bool = False  # an export step's artifact: what the gates judge
    runtime: str = "onnxruntime"  # what it runs on: an OpenVINO IR on OpenVINO, the rest on onnxruntime
    quality: float | None = None
    latency_p50_ms: float | None = None
    ratios: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        weights = self.onnx.with_suffix(".bin")  # an OpenVINO IR's weights beside its .xml
        return self.onnx.stat().st_size + (weights.stat().st_size if self.runtime == "openvino" and weights.is_file()
                                           else 0)

    def to_json(self) -> dict:
        return {"name": self.name, "artifact": str(self.onnx), "precision": self.precision, "step": self.step,
                "runtime": self.runtime,
                "bytes": self.bytes, "quality": self.quality, "latency_p50_ms": self.latency_p50_ms,
                "latency_ratios": self.ratios}


@dataclass
class Measurements:
    metric: str
    variants: list[Variant]
    eval_source: str
    rounds: int

    def by_name(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def to_json(self) -> dict:
        runtimes = ", ".join(sorted({v.runtime for v in self.variants}))
        return {"metric": self.metric, "eval": self.eval_source, "runtime": runtimes, "threads": THREADS,
                "batch": 1, "rounds": self.rounds, "variants": [v.to_json() for v in self.variants]}


def _export_cached(cache: cache_mod.Cache, kind: str, source: Path, kwargs: dict, log, extra=None) -> Path:
    """An FP32 ONNX export of ``source`` kept in the step cache (keyed like a step)."""
    from edgeopt.export.api import export

    key = cache_mod.step_key({"step": kind, "input": cache_mod.content_hash(source), "config": kwargs,
                              "versions": cache_mod.versions()})
    entry, _ = cache.lookup(key)
    if entry is not None:
        return entry.output
    with cache.locked(key):
        partial = cache.partial(key)
        if partial.exists():
            import shutil

            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        try:
            log(f"exporting {source.name} to FP32 ONNX for the comparison")
            result = export(str(source), str(partial / source.name), to="onnx", **kwargs)
            if not result.verified:
                raise RuntimeError(f"the ONNX export of {source} did not match it: {result.failure}")
            if extra is not None:
                extra(partial / source.name)
        except BaseException:
            import shutil

            shutil.rmtree(partial, ignore_errors=True)
            raise
        return cache.commit(key, partial, {"step": kind, "key": key}, source.name).output


def _stock_int8(folder: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.stock-int8.onnx"))


def variants(recipe, runner, outcomes, log) -> list[Variant]:
    opts = {k: v for k, v in recipe.model_options.items() if k in ("arch", "arch_kwargs", "trust_pickle", "inputs")}
    teacher = _export_cached(runner.cache, "teacher-baseline", recipe.model, opts, log, extra=_stock_int8)
    out = [Variant("teacher FP32", teacher / "model.onnx", "fp32", teacher, "teacher"),
           Variant("teacher stock INT8", teacher / "model.stock-int8.onnx", "int8", teacher, "teacher")]
    for o in outcomes:
        if o.output is None or o.cache == "skipped":
            continue
        target = o.output.resolve()
        if o.step.kind.produces == "model":
            probe = _export_cached(runner.cache, "probe", target, {}, log)
            out.append(Variant(f"{o.step.name} FP32", probe / "model.onnx", "fp32", probe, o.step.label))
        elif o.step.kind.produces == "export":
            manifest = json.loads((target / "manifest.json").read_text())
            for art in manifest["artifacts"]:
                if art["format"] == "onnx" and "onnxruntime" in art.get("runtimes", []):
                    out.append(Variant(f"{o.step.name} {art['precision'].upper()} ({art['path']})",
                                       target / art["path"], art["precision"], target, o.step.label, True))
                elif art["format"] == "openvino":  # the IR on its own runtime, in the same interleaved run
                    out.append(Variant(f"{o.step.name} {art['precision'].upper()} ({art['path']}, openvino)",
                                       target / art["path"], art["precision"], target, o.step.label, True,
                                       runtime="openvino"))
    return out


# -- quality --------------------------------------------------------------------------------------

def eval_source(recipe) -> Path | None:
    """What every variant is scored and timed on: data.eval, else the first data the recipe has. A
    recipe that updates a model scores on the old data: the only data the teacher can read when the
    update grew its id tables (how the update did on the new data is in its step's report)."""
    order = ("eval", "calib", "train", "new", "old")
    if any(s.kind.name == "update" for s in recipe.steps):
        order = ("old", "eval", "calib", "train", "new")
    return next((recipe.data[k] for k in order if k in recipe.data), None)


def read_texts(path: Path, limit: int) -> list[str]:
    if path.suffix == ".jsonl":
        texts = [json.loads(line).get("text", "") for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = [r for r in csv.reader(f) if r]
        col = next((i for i, h in enumerate(rows[0]) if h.strip().lower() in ("text", "title", "productdisplayname")),
                   0) if rows else 0
        texts = [r[col] for r in rows[1:] if len(r) > col]
    else:
        texts = path.read_text(encoding="utf-8", errors="replace").splitlines()
    texts = [t.strip() for t in texts if t.strip()]
    return texts[:limit]


class _Runner:
    """One variant loaded in this process, one sample per call."""

    def __init__(self, variant: Variant):
        from edgeopt.backends import get_runtime

        self.session = get_runtime(variant.runtime).load(str(variant.onnx), threads=THREADS,
                                                         precision=variant.precision)
        manifest = json.loads((variant.folder / "manifest.json").read_text())
        self.names = [i["name"] for i in manifest["inputs"]]
        self.output = manifest["outputs"][0]["name"]
        pre = manifest.get("preprocessing") or {}
        self.tokenizer = None
        if pre.get("tokenizer"):
            from edgeopt.runtime.text import TextEncoder

            self.tokenizer = TextEncoder(variant.folder / pre["tokenizer"], max_length=pre.get("max_length", 128))

    def texts(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            feeds = {k: v for k, v in self.tokenizer([t]).items() if k in self.names}
            rows.append(self.session.run(feeds)[self.output].reshape(-1))
        return np.stack(rows)

    def samples(self, feeds: list[dict]) -> np.ndarray:
        return np.stack([self.session.run({k: v for k, v in f.items() if k in self.names})[self.output].reshape(-1)
                         for f in feeds])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def score_quality(recipe, found: list[Variant], log) -> tuple[str, str]:
    """Fill each variant's ``quality``; returns (metric, what it was measured on)."""
    m = recipe.measure
    eval_path = eval_source(recipe)
    probe = _Runner(found[0])
    if probe.tokenizer is not None:
        texts = read_texts(eval_path, m.eval_size) if eval_path is not None else []
        judged = None
        if "judgments" in recipe.data:
            from edgeopt.distill.search import Judgments, read_judgments

            j = read_judgments(recipe.data["judgments"])
            pick = sorted(np.random.default_rng(0).permutation(len(j.queries))[:m.queries])
            judged = Judgments(j.source, [j.queries[i] for i in pick], j.documents, [j.relevant[i] for i in pick])
        if judged is not None:
            from edgeopt.distill.search import K, search_quality

            metric = f"recall@{K}"
            log(f"scoring {len(found)} variants as a store search: {len(judged.queries)} queries")
            for v in found:
                runner = _Runner(v)
                result = search_quality(judged, texts, {"v": runner.texts})
                v.quality = result["v"][metric]
                log(f"  {v.name}: {metric} {v.quality:.4f}")
            return metric, f"{len(judged.queries)} queries of {judged.source} against {result['pool']} products"
        reference = probe.texts(texts)
        for v in found:
            v.quality = float(_cos(_Runner(v).texts(texts), reference).mean())
        return "cosine to the teacher", f"{len(texts)} texts of {eval_path}"
    from edgeopt.data import load_data
    from edgeopt.models import load_model

    io = load_model(found[0].onnx).io
    ds = load_data(eval_path, io=io, limit=m.eval_size)
    feeds = [{k: np.asarray(v) for k, v in ds.samples[i].items()} for i in range(len(ds))]  # batch 1 each
    reference = probe.samples(feeds)
    task = _labelled_task(ds.labels, reference)
    if task is not None:
        from edgeopt.update import metrics

        labels = np.asarray(ds.labels)
        metric = m.metric or _update_metric(recipe) or metrics.default(task, reference.shape[1])
        kind = metrics.detect_output_kind(reference) if task == "binary" else "logits"
        for v in found:
            v.quality = metrics.value(metric, task, _Runner(v).samples(feeds), labels, kind)
        return metric, f"{len(feeds)} labelled samples of {eval_path}"
    for v in found:
        v.quality = float(_cos(_Runner(v).samples(feeds), reference).mean())
    return "cosine to the teacher", f"{len(feeds)} samples of {eval_path}"


def _labelled_task(labels, reference: np.ndarray) -> str | None:
    """classify for one column per class / item, binary for one column with 0/1 labels, else None
    (scored by cosine to the teacher)."""
    if labels is None:
        return None
    if reference.ndim == 2 and reference.shape[1] > 1:
        return "classify"
    return "binary" if set(np.unique(np.asarray(labels)).tolist()) <= {0, 1} else None


def _update_metric(recipe) -> str | None:
    """The metric an update step is gated on, so the side-by-side table speaks the same one."""
    for s in recipe.steps:
        if s.kind.name == "update":
            metric = s.config.given().get("metric")
            if isinstance(metric, str):
                return metric
    return None


# -- latency --------------------------------------------------------------------------------------

def _feeds_file(recipe, variant: Variant, work: Path) -> Path:
    """Batch-1 feeds every variant is timed on: held-out texts one per call, or held-out samples."""
    runner = _Runner(variant)
    eval_path = eval_source(recipe)
    arrays = {}
    if runner.tokenizer is not None:
        texts = read_texts(eval_path, 64) if eval_path is not None else ["red running shoes"]
        for i, t in enumerate(texts):
            for k, v in runner.tokenizer([t]).items():
                arrays[f"{i}/{k}"] = v
    else:
        from edgeopt.data import load_data
        from edgeopt.models import load_model

        ds = load_data(eval_path, io=load_model(variant.onnx).io, limit=32)
        for i in range(len(ds)):
            for k, v in ds.samples[i].items():
                arrays[f"{i}/{k}"] = np.asarray(v)
    path = work / "timing-feeds.npz"
    np.savez(path, **arrays)
    return path


def child(onnx: str, precision: str, feeds: str, runtime: str = RUNTIME) -> None:
    """The timed process of one variant (``python -m edgeopt.recipe.measure ...``)."""
    import itertools

    from edgeopt.backends import get_runtime
    from edgeopt.bench.interleave import serve

    session = get_runtime(runtime).load(onnx, threads=THREADS, precision=precision)
    data = np.load(feeds)
    rows: dict[int, dict] = {}
    for key in data.files:  # the session feeds each graph the inputs it reads
        i, name = key.split("/", 1)
        rows.setdefault(int(i), {})[name] = data[key]
    cycle = itertools.cycle([r for _, r in sorted(rows.items())])
    serve(lambda: session.run(next(cycle)), warmup=10)


def time_variants(recipe, found: list[Variant], work: Path, log) -> None:
    from edgeopt.bench.interleave import interleaved, ratios

    feeds = _feeds_file(recipe, found[0], work)
    commands = {v.name: [sys.executable, "-m", "edgeopt.recipe.measure", str(v.onnx), v.precision, str(feeds),
                         v.runtime] for v in found}
    m = recipe.measure
    log(f"timing {len(found)} variants: {m.rounds} interleaved rounds of {m.runs} calls, each in its own process")
    per = interleaved(commands, rounds=m.rounds, runs=m.runs)
    for baseline in ("teacher FP32", "teacher stock INT8"):
        for name, r in ratios(per, baseline).items():
            next(v for v in found if v.name == name).ratios[f"vs {baseline}"] = round(r, 4)
    for v in found:
        v.latency_p50_ms = float(np.median(per[v.name]))


def measure(recipe, runner, outcomes, work: Path, log: Callable[[str], None]) -> Measurements:
    found = variants(recipe, runner, outcomes, log)
    metric, source = score_quality(recipe, found, log)
    time_variants(recipe, found, work, log)
    return Measurements(metric, found, source, recipe.measure.rounds)


if __name__ == "__main__":
    child(*sys.argv[1:5])

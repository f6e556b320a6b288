"""The export pipeline's INT8 step: read calibration / evaluation data, run the gated quantizer,
and record the kept INT8 artifacts (quality, fallback nodes, TensorRT readiness) in the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.manifest import ArtifactRecord
from edgeopt.models.base import LoadedModel


@dataclass
class Int8Data:
    calib: Dataset
    evald: Dataset
    metric: str
    output: str
    notes: list[str]


def _metric_for(model: LoadedModel, evald: Dataset, requested: str | None) -> str:
    from edgeopt.optimize.metrics import default_metric, parse_metric

    if requested:
        name, _ = parse_metric(requested)
        if name in ("ndcg", "recall") and evald.labels is None:
            raise UsageError(f"--metric {requested} needs labels in the evaluation data")
        return requested
    from edgeopt.optimize.metrics import binary_labels

    task = model.metadata.get("task")
    out = model.io.outputs[0]
    one_column = len(out.shape) == 1 or (len(out.shape) == 2 and out.shape[1] == 1)  # [batch] or [batch, 1]
    if one_column and task in (None, "binary") and binary_labels(evald.labels):
        return "auc"  # a click model: argmax over its one column would always be 0
    if task is None and evald.labels is not None and len(out.shape) == 2:
        task = "classify"
    if task in (None, "embed") and model.is_text and len(out.shape) == 3:
        return "cosine"  # one vector per token (last_hidden_state): the gate compares them token by token
    return default_metric(task, out.shape)


def load_int8_data(model: LoadedModel, opts) -> Int8Data:
    from edgeopt.assets import CALIBRATION_TITLES
    from edgeopt.data import load_data
    from edgeopt.optimize.metrics import parse_metric

    cfg = opts.int8
    notes = []
    calib_spec = opts.calib
    if calib_spec is None:
        if not model.is_text:
            raise UsageError("--int8 needs --calib DATA: a few hundred representative inputs "
                             "(.npz keyed by input name, an image folder, a .csv of images, or text)")
        calib_spec = str(CALIBRATION_TITLES)
        notes.append("calibrated on edgeopt's built-in product titles; pass --calib with your own data for best quality")
    kwargs = {"io": model.io, "tokenizer": model.tokenizer, "max_length": model.max_length, "seed": cfg.seed,
              "image": model.metadata.get("image"), "class_names": model.metadata.get("class_names")}
    if opts.eval_data:
        calib = load_data(calib_spec, limit=cfg.calib_size, **kwargs)
        evald = load_data(opts.eval_data, limit=cfg.eval_size, **kwargs)
    else:
        full = load_data(calib_spec, limit=cfg.calib_size + cfg.eval_size, **kwargs)
        if len(full) < 4:
            raise UsageError(f"{calib_spec} has {len(full)} samples: too few to calibrate and hold some out")
        holdout = cfg.eval_size / (cfg.calib_size + cfg.eval_size) if len(full) >= cfg.calib_size + cfg.eval_size \
            else cfg.holdout
        calib, evald = full.split(holdout, seed=cfg.seed)
        notes.append(f"evaluated on {len(evald)} samples held out from the calibration data")
    from edgeopt.data.fit import check_fits

    check_fits(model, calib, opts.calib or "the built-in titles")
    check_fits(model, evald, opts.eval_data or opts.calib or "the built-in titles")
    output = model.io.outputs[0].name
    metric = _metric_for(model, evald, cfg.metric)
    if parse_metric(metric)[0] == "top1" and evald.labels is None:
        notes.append("--metric top1 without labels: the gate measured agreement with the FP32 model's top-1 "
                     "decisions, not accuracy; give labelled --eval data (a 'labels' array or a label column) "
                     "to gate on accuracy")
    if metric == "nn" and len(evald) < 200:
        notes.append(f"--metric nn on {len(evald)} samples: one changed neighbour moves it by "
                     f"{1 / len(evald):.3f}; use --eval with >= 200 samples for a stable gate")
    return Int8Data(calib, evald, metric, output, notes)


def add_int8_artifacts(model: LoadedModel, stage: Path, artifacts: list[ArtifactRecord], data: Int8Data,
                       opts, log, feeds=(), refs=(), buckets=None, eager_onnx: Path | None = None) -> Int8Step:
    """Quantize (optimize.quantize.int8), append the kept INT8 artifacts to ``artifacts`` and return
    the manifest's ``int8`` report with the verdict. ``eager_onnx``: model.onnx when it was traced
    with eager attention (export/onnx.py), which onnxruntime's fused graph is then made from
    without a second export."""
    from edgeopt.optimize.quantize.int8 import Int8Job, quantize_int8
    from edgeopt.optimize.quantize.openvino_rungs import background_probe

    fp32_xml = stage / "openvino" / "model.xml"
    fp32_xml = fp32_xml if fp32_xml.exists() and opts.int8.openvino else None
    fused_attention = False
    if model.is_text and fp32_xml is not None:
        from edgeopt.export.openvino_ir import has_fused_attention

        fused_attention = has_fused_attention(fp32_xml)
    ort_fp32, fusion = None, None
    # started first: it calibrates while onnxruntime's fused graph is made (single-threaded Python)
    probe = background_probe(fp32_xml=fp32_xml, stage=stage, calib=data.calib, cfg=opts.int8,
                             transformer=model.is_text, fused_attention=fused_attention,
                             user_calibration=opts.calib is not None, log=log)
    try:
        if model.is_text and opts.int8.mode in ("auto", "dynamic") and feeds:
            from edgeopt.export.ort_fused import fused_fp32

            log("fusing attention for onnxruntime (dynamic INT8)")
            (stage / ".int8-work").mkdir(exist_ok=True)
            ort_fp32, fusion = fused_fp32(model, stage / ".int8-work" / "ort-fused.onnx", list(feeds), list(refs),
                                          exported=eager_onnx)
        job = Int8Job(stage / "model.onnx", data.calib, data.evald, data.output, data.metric,
                      transformer=model.is_text, fp32_xml=fp32_xml, fused_attention=fused_attention,
                      ort_fp32=ort_fp32, want_qdq="tensorrt" in opts.targets,
                      user_calibration=opts.calib is not None, threads=opts.threads,
                      reference=None if opts.reference is None else _reference_fn(opts.reference),
                      reference_name=None if opts.reference is None else str(opts.reference.source))
        outcome = quantize_int8(job=job, stage=stage, cfg=opts.int8, log=log, probe=probe)
    finally:
        if probe is not None:
            probe.cancel()
    report = outcome.to_json()
    if fusion is not None:
        report["ort_fusion"] = fusion
    report["notes"] = list(data.notes) + _runtime_notes(outcome, opts.calib is None, fp32_xml is not None)
    if opts.int8.speed_check:  # the CPU whose speed decided which INT8 artifacts were kept
        from edgeopt.cpu import cpu_info

        cpu = cpu_info()
        report["speed_check_cpu"] = {"model": cpu.model, "arch": cpu.arch, "isa": list(cpu.isa),
                                     "int8_acceleration": cpu.int8_acceleration}
    report["bytes"] = []
    for cand, rel in ((outcome.onnx, "model.int8.onnx"), (outcome.qdq, "model.int8.qdq.onnx"),
                      (outcome.openvino, "openvino/model.int8.xml")):
        if cand is not None:
            record = _artifact_record(cand, rel, stage, outcome.max_drop)
            report["bytes"].append(_bytes_before_after(stage, rel, record))
            artifacts.append(record)
            if record.format == "openvino" and buckets is not None:  # the static shapes must pass the same gate
                from edgeopt.export import bucket_checks

                log(f"checking static shapes for {rel} with the INT8 gate")
                bucket_checks.apply(stage, record, bucket_checks.check_with_gate(
                    stage / rel, buckets, outcome.scorer, opts.threads,
                    probes=bucket_checks.probe_feeds(model, buckets)), log)
    return Int8Step(report, None if outcome.passed else _failure(outcome))


@dataclass
class Int8Step:
    report: dict  # the manifest's "int8"
    failure: str | None  # why no INT8 artifact was kept (the export's gate error), None when one was

    @property
    def passed(self) -> bool:
        return self.failure is None


def _failure(outcome) -> str:
    """Why no INT8 artifact was kept: slower than FP32 here, or the gate was not met."""
    slow = [c.rejected for c in outcome.candidates if c.rejected and c.probe_samples is None]
    if slow:
        return (f"INT8 that meets --max-drop {outcome.max_drop} on {outcome.metric} is {slow[0]}; FP32 artifacts "
                "kept: FP32 is the faster model here (see manifest.json 'int8'; --no-speed-check keeps INT8 anyway)")
    return (f"INT8 could not meet --max-drop {outcome.max_drop} on {outcome.metric}; FP32 artifacts kept "
            "(see manifest.json 'int8' for each candidate)")


def _runtime_notes(outcome, builtin_titles: bool, openvino: bool) -> list[str]:
    """A note for each runtime that keeps FP32 while the other got INT8 (when neither did, the
    export's error says why), and for calibration-free OpenVINO INT8."""
    notes = []
    if outcome.openvino is not None and outcome.openvino.name == "openvino-dynamic" and builtin_titles:
        notes.append("OpenVINO INT8 is calibration-free (dynamic) as no --calib was given; with your "
                     "own data, static INT8 is tried first (~15 % faster)")
    for runtime, kept, rel in (("onnxruntime", outcome.onnx, "model.int8.onnx"),
                               ("openvino", outcome.openvino, "openvino/model.int8.xml")):
        if kept is not None or not outcome.passed:
            continue
        slow = next((c for c in outcome.candidates if c.runtime == runtime and c.rejected), None)
        name = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[runtime]
        if slow is not None:
            how = "was not calibrated: a probe" if slow.probe_samples is not None else "met the gate but"
            notes.append(f"{name} INT8 {how} is {slow.rejected} ({rel} not written; "
                         "--no-speed-check keeps it, e.g. for devices faster at INT8 than this machine)")
        elif runtime == "onnxruntime" or openvino:
            notes.append(f"{name} INT8 did not meet the gate ({rel} not written)")
    return notes


def _bytes_before_after(stage: Path, rel: str, record: ArtifactRecord) -> dict:
    """The INT8 file's bytes against its FP32 counterpart's (an IR: .xml + .bin); ONNX files also
    count their embedding tables and how many are stored in 8 bits (into the artifact's record)."""
    from edgeopt.optimize.quantize.embeddings import artifact_bytes, table_gathers

    fp32 = "openvino/model.xml" if rel.endswith(".xml") else "model.onnx"
    before, after = artifact_bytes(stage / fp32), artifact_bytes(stage / rel)
    row = {"int8": rel, "bytes": after, "fp32": fp32, "fp32_bytes": before, "ratio": round(after / before, 4)}
    if rel.endswith(".onnx"):
        record.extra["embedding_tables"] = table_gathers(stage / rel)
    return row


def _artifact_record(cand, rel: str, stage: Path, max_drop: float) -> ArtifactRecord:
    """The manifest record of a kept INT8 file: its quality, its recipe's fields and, for static
    QDQ ONNX, whether TensorRT can take it."""
    from edgeopt.export.tensorrt import tensorrt_readiness
    from edgeopt.optimize.quantize.candidate import StaticQdq

    fmt = "openvino" if rel.endswith(".xml") else "onnx"
    runtimes = {"model.int8.onnx": ["onnxruntime", "openvino", "tensorrt"],
                "model.int8.qdq.onnx": ["tensorrt", "onnxruntime"]}.get(rel, ["openvino"])
    if cand.recipe.onnxruntime_only:  # MatMulInteger / MatMulNBits / contrib ops
        runtimes = ["onnxruntime"]
    quality = {"metric": cand.quality.metric, **{k: v for k, v in cand.quality.to_json().items() if k != "metric"}}
    extra = {"int8_mode": cand.name, "p50_ms": cand.p50_ms, **cand.recipe.artifact_fields()}
    if fmt == "onnx" and isinstance(cand.recipe, StaticQdq):
        extra["tensorrt_ready"] = tensorrt_readiness(stage / rel) if cand.recipe.activations == "symmetric" else {
            "ok": False, "reason": "asymmetric uint8 activations, faster in onnxruntime; export with "
                                   "--to ...,tensorrt for a TensorRT-ready QDQ model"}
    return ArtifactRecord(rel, fmt, "int8", runtimes,
                          verification={"passed": cand.passed, "gate": "quality", "max_drop": max_drop},
                          quality=quality, fallback_nodes=cand.fallback_nodes, extra=extra)


def _reference_fn(ref: LoadedModel):
    """feeds -> the reference model's first output (a teacher's embedding or logits), fed the inputs
    it takes; the scorer checks that it has the shape of the exported model's output."""
    names = [s.name for s in ref.io.inputs]
    output = ref.io.outputs[0].name

    def run(feeds):
        missing = [n for n in names if n not in feeds]
        if missing:
            raise UsageError(f"the gate's reference {ref.name} needs input {missing[0]!r}, which this model's data "
                             "does not have; gate against a model with the same inputs")
        return ref.reference({n: feeds[n] for n in names})[output]
    return run

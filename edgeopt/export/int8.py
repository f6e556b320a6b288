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
    task = model.metadata.get("task")
    out = model.io.outputs[0]
    if task is None and evald.labels is not None and len(out.shape) == 2:
        task = "classify"
    return default_metric(task, out.shape)


def load_int8_data(model: LoadedModel, opts) -> Int8Data:
    from edgeopt.assets import CALIBRATION_TITLES
    from edgeopt.data import load_data

    cfg = opts.int8
    notes = []
    calib_spec = opts.calib
    if calib_spec is None:
        if not model.is_text:
            raise UsageError("--int8 needs --calib DATA: a few hundred representative inputs "
                             "(.npz keyed by input name, an image folder, a .csv of images, or text)")
        calib_spec = str(CALIBRATION_TITLES)
        notes.append("calibrated on edgeopt's built-in product titles; pass --calib with your own data for best quality")
    kwargs = {"io": model.io, "tokenizer": model.tokenizer, "max_length": model.max_length, "seed": cfg.seed}
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
    output = model.io.outputs[0].name
    metric = _metric_for(model, evald, cfg.metric)
    if metric == "nn" and len(evald) < 200:
        notes.append(f"--metric nn on {len(evald)} samples: one changed neighbour moves it by "
                     f"{1 / len(evald):.3f}; use --eval with >= 200 samples for a stable gate")
    return Int8Data(calib, evald, metric, output, notes)


def add_int8_artifacts(model: LoadedModel, stage: Path, artifacts: list[ArtifactRecord], data: Int8Data,
                       opts, log, feeds=(), refs=(), buckets=None, eager_onnx: Path | None = None) -> dict:
    """``eager_onnx``: model.onnx when it was traced with eager attention (export/onnx.py), which
    onnxruntime's fused graph is then made from without a second export."""
    from edgeopt.export.tensorrt import tensorrt_readiness
    from edgeopt.optimize.quantize.int8 import quantize_int8
    from edgeopt.optimize.quantize.openvino_ladder import background_probe
    from edgeopt.optimize.quantize.ort import DYNAMIC_WEIGHTS

    fp32_xml = stage / "openvino" / "model.xml"
    fp32_xml = fp32_xml if fp32_xml.exists() and opts.int8.openvino else None
    ort_fp32, fusion = None, None
    # started first: it calibrates while onnxruntime's fused graph is made (single-threaded Python)
    probe = background_probe(fp32_xml, stage, data.calib, opts.int8, model.is_text, opts.calib is not None, log)
    try:
        if model.is_text and opts.int8.mode in ("auto", "dynamic") and feeds:
            from edgeopt.export.ort_fused import fused_fp32

            log("fusing attention for onnxruntime (dynamic INT8)")
            (stage / ".int8-work").mkdir(exist_ok=True)
            ort_fp32, fusion = fused_fp32(model, stage / ".int8-work" / "ort-fused.onnx", list(feeds), list(refs),
                                          exported=eager_onnx)
        outcome = quantize_int8(stage / "model.onnx", stage, calib=data.calib, evald=data.evald, cfg=opts.int8,
                                output=data.output, metric=data.metric, text=model.is_text, fp32_xml=fp32_xml,
                                threads=opts.threads, want_qdq="tensorrt" in opts.targets, ort_fp32=ort_fp32,
                                user_calibration=opts.calib is not None, log=log, probe=probe)
    finally:
        if probe is not None:
            probe.cancel()
    report = outcome.to_json()
    if fusion is not None:
        report["ort_fusion"] = fusion
    report["notes"] = list(data.notes)
    if opts.int8.speed_check:  # the CPU whose speed decided which INT8 artifacts were kept
        from edgeopt.doctor import cpu_info

        cpu = cpu_info()
        report["speed_check_cpu"] = {k: cpu[k] for k in ("model", "arch", "isa", "int8_acceleration")}
    if outcome.openvino is not None and outcome.openvino.name == "openvino-dynamic" and opts.calib is None:
        report["notes"].append("OpenVINO INT8 is calibration-free (dynamic) as no --calib was given; with your "
                               "own data, static INT8 is tried first (~15 % faster)")
    for runtime, kept, rel in (("onnxruntime", outcome.onnx, "model.int8.onnx"),
                               ("openvino", outcome.openvino, "openvino/model.int8.xml")):
        if kept is not None or not outcome.passed:  # neither kept: the CLI's error says why
            continue
        slow = next((c for c in outcome.candidates if c.runtime == runtime and c.extra.get("rejected")), None)
        name = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[runtime]
        if slow is not None:
            how = "was not calibrated: a probe" if slow.extra.get("probe") else "met the gate but"
            report["notes"].append(f"{name} INT8 {how} is {slow.extra['rejected']} ({rel} not written; "
                                   "--no-speed-check keeps it, e.g. for devices faster at INT8 than this machine)")
        elif runtime == "onnxruntime" or fp32_xml is not None:
            report["notes"].append(f"{name} INT8 did not meet the gate ({rel} not written)")
    for cand, rel, fmt, runtimes in ((outcome.onnx, "model.int8.onnx", "onnx", ["onnxruntime", "openvino", "tensorrt"]),
                                     (outcome.qdq, "model.int8.qdq.onnx", "onnx", ["tensorrt", "onnxruntime"]),
                                     (outcome.openvino, "openvino/model.int8.xml", "openvino", ["openvino"])):
        if cand is None:
            continue
        quality = {"metric": cand.quality.metric, **{k: v for k, v in cand.quality.to_json().items() if k != "metric"}}
        extra = {"int8_mode": cand.name, "p50_ms": cand.p50_ms}
        if cand.name == "dynamic":  # MatMulInteger / contrib ops: onnxruntime only
            runtimes = ["onnxruntime"]
            if ort_fp32 is not None:
                extra["graph"] = "onnxruntime-fused"
            extra["weights"] = DYNAMIC_WEIGHTS
        elif cand.name == "blockwise":  # MatMulNBits, a contrib op: onnxruntime only
            runtimes = ["onnxruntime"]
            block = cand.extra["block_size"]
            extra.update(block_size=block, weights=f"int8 symmetric, one scale per block of {block} input channels",
                         activations=f"int8 per block of {block} at run time (MatMulNBits, accuracy_level 4)")
        if cand.extra.get("per_token_nodes"):
            extra["per_token_nodes"] = cand.extra["per_token_nodes"]
        for key in ("smooth", "activation_group_size", "nncf_preset"):
            if cand.extra.get(key):
                extra[key] = cand.extra[key]
        if fmt == "onnx" and cand.name == "static":
            extra["activations"] = cand.extra.get("activations", "symmetric")
            extra["tensorrt_ready"] = tensorrt_readiness(stage / rel) if extra["activations"] == "symmetric" else {
                "ok": False, "reason": "asymmetric uint8 activations, faster in onnxruntime; export with "
                                       "--to ...,tensorrt for a TensorRT-ready QDQ model"}
        record = ArtifactRecord(rel, fmt, "int8", runtimes,
                                verification={"passed": cand.passed, "gate": "quality", "max_drop": outcome.max_drop},
                                quality=quality, fallback_nodes=cand.fallback_nodes, extra=extra)
        artifacts.append(record)
        if fmt == "openvino" and buckets is not None:  # the static shapes must pass the same gate
            from edgeopt.export import buckets as shape_buckets

            log(f"checking static shapes for {rel} with the INT8 gate")
            shape_buckets.apply(stage, record, shape_buckets.check_with_gate(
                stage / rel, buckets, outcome.scorer, opts.threads,
                probes=shape_buckets.probe_feeds(model, buckets)), log)
    return report

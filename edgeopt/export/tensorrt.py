"""TensorRT: readiness of a QDQ ONNX (checked on any machine) and engine building (GPU only).

Engines are built with the TensorRT Python API: a strongly typed network from the QDQ ONNX for
INT8 (precisions come from the Q/DQ nodes), or the FP32 ONNX with the FP16 flag; one
optimization profile spanning the calibration data's shapes; a timing cache reused across
builds; the engine named after the GPU architecture and TensorRT version it only runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeopt.errors import UnavailableError, UsageError

_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def fold_bias_dequantize(model):
    """Replace int32 bias DequantizeLinear nodes with float biases, in place; returns how many.

    onnxruntime wants int32 biases to fuse QDQ Conv/Gemm into integer kernels; TensorRT keeps
    biases in float and accepts only int8 Q/DQ. The same QDQ model serves both after this fold.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    folded = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]])
        if q.dtype != np.int32:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 else 0.0
        value = ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    return len(folded)


def tensorrt_readiness(qdq_path: Path) -> dict:
    """TensorRT's explicit-quantization rules: int8 Q/DQ, zero points 0, positive scales,
    per-tensor activations, per-channel weights on the output-channel axis. Checked on the graph
    the engine builder parses: int32 bias DQ folded to float, uint8 activations shifted to int8."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.optimize.quantize.qdq import shift_activations

    model = onnx.load(str(qdq_path), load_external_data=False)
    bias_folded = fold_bias_dequantize(model)
    shifted = shift_activations(model, to="int8")
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    issues, checked = [], 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        checked += 1
        scale = inits.get(node.input[1])
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zp is not None:
            z = numpy_helper.to_array(zp)
            if z.dtype != np.int8:
                issues.append(f"{node.name}: zero point type {z.dtype} (TensorRT needs int8)")
            elif np.any(z != 0):
                issues.append(f"{node.name}: non-zero zero point (TensorRT needs symmetric quantization)")
        if scale is None:
            continue
        s = numpy_helper.to_array(scale)
        if np.any(s <= 0):
            issues.append(f"{node.name}: non-positive scale")
        if s.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
            if not weight:
                issues.append(f"{node.name}: per-channel activation scales (TensorRT needs per-tensor)")
                continue
            rank = len(inits[node.input[0]].dims)
            axis = axis % rank
            for user in consumers.get(node.output[0], []):
                expected = _WEIGHT_AXIS.get(user.op_type)
                if user.op_type == "MatMul":
                    expected = rank - 1
                elif user.op_type == "Gemm":
                    trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
                    expected = 0 if trans_b else 1
                if expected is not None and axis != expected:
                    issues.append(f"{node.name}: per-channel axis {axis}, {user.op_type} needs {expected}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        issues.append(f"opset {opset}: per-channel Q/DQ needs opset >= 13")
    if shifted["lossy"]:
        issues_note = f"{shifted['lossy']} non-negative uint8 activations (e.g. softmax outputs) become int8 with one bit less"
    else:
        issues_note = None
    return {"ok": not issues, "qdq_nodes": checked, "bias_dq_folded": bias_folded,
            "activations_shifted_to_int8": shifted["exact"] + shifted["lossy"], "note": issues_note,
            "issues": issues[:20]}


def engine_filename(precision: str, compute_capability: str, trt_version: str) -> str:
    """tensorrt/model.<precision>.<gpu-arch>.plan, the arch tag carrying the TensorRT version,
    since an engine runs only on the GPU architecture and TensorRT release that built it."""
    from edgeopt.runtime.tensorrt import engine_tag  # the tag the device's runtime matches

    return f"model.{precision}.{engine_tag(compute_capability, trt_version)}.plan"


def profile_from_data(inputs, samples: list[dict[str, np.ndarray]], max_batch: int = 32) -> dict:
    """One optimization profile: {input: (min, opt, max) shapes} over the data's shapes.

    The batch axis spans 1..max_batch (opt 1: in-store devices serve single requests); other
    dynamic axes span the smallest to the largest size seen, opt at the median.
    """
    profile = {}
    for spec in inputs:
        sizes = np.array([s[spec.name].shape for s in samples]) if samples else None
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                span = (dim, dim, dim)
            elif axis == 0:
                span = (1, 1, max_batch)
            elif sizes is None:
                raise UsageError(f"no data to size dynamic axis {dim!r} of {spec.name}; pass --calib")
            else:
                col = sizes[:, axis]
                span = (int(col.min()), int(np.median(col)), int(col.max()))
            for bound, value in zip((lo, opt, hi), span):
                bound.append(value)
        profile[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return profile


def build_engine(onnx_path: Path, plan_path: Path, *, precision: str, profile: dict,
                 timing_cache: Path | None = None, workspace_gib: float = 4.0) -> Path:  # pragma: no cover - GPU
    """Build and serialize an engine; writes ``plan_path`` atomically and updates the timing cache."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UnavailableError("TensorRT engines need: pip install 'edgeopt[tensorrt]' on an NVIDIA GPU machine") from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if precision == "int8":  # precisions come from the Q/DQ nodes
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    import onnx

    from edgeopt.optimize.quantize.qdq import shift_activations

    model = onnx.load(str(onnx_path))
    fold_bias_dequantize(model)
    shift_activations(model, to="int8")  # TensorRT: int8 activations, zero point 0
    if not parser.parse(model.SerializeToString(), str(onnx_path.parent)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT could not build an engine from {onnx_path.name} (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_name(plan_path.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, plan_path)
    if timing_cache:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def int8_qdq_source(stage: Path) -> Path | None:
    """The Q/DQ INT8 model TensorRT builds from: model.int8.onnx when it is QDQ (static), else the
    static model kept beside it as model.int8.qdq.onnx; None when there is neither (dynamic
    MatMulInteger graphs do not parse in TensorRT)."""
    import onnx

    for name in ("model.int8.qdq.onnx", "model.int8.onnx"):
        path = stage / name
        if path.exists():
            ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
            if "QuantizeLinear" in ops and "DynamicQuantizeLinear" not in ops:
                return path
    return None


def add_tensorrt_artifacts(stage: Path, artifacts: list, model, feeds, refs, samples,
                           log) -> None:  # pragma: no cover - GPU
    """Engines for the GPU here: INT8 from the gated QDQ ONNX (when present) and FP16 from FP32,
    each verified on the sample inputs (FP16 against tolerance; INT8 is recorded for the gate)."""
    from edgeopt.export.verify import Tolerance, compare
    from edgeopt.manifest import ArtifactRecord
    from edgeopt.backends.tensorrt import TensorRtRuntime, nvidia_gpus, tensorrt_version

    gpu = nvidia_gpus()[0]
    version = tensorrt_version() or "0.0"
    profile = profile_from_data(model.io.inputs, samples or feeds)
    cache = stage / "tensorrt" / "timing.cache"
    jobs = [("fp16", stage / "model.onnx")]
    qdq = int8_qdq_source(stage)
    if qdq is not None:
        jobs.insert(0, ("int8", qdq))
    for precision, source in jobs:
        rel = f"tensorrt/{engine_filename(precision, gpu['compute_capability'], version)}"
        log(f"building TensorRT {precision} engine")
        build_engine(source, stage / rel, precision=precision, profile=profile, timing_cache=cache)
        session = TensorRtRuntime().load(str(stage / rel))
        outs = [session.run(f) for f in feeds]
        tol = Tolerance.for_artifact("tensorrt", "fp16") if precision == "fp16" else Tolerance(0.1, 0.1, 0.99)
        artifacts.append(ArtifactRecord(rel, "tensorrt", precision, ["tensorrt"],
                                        verification={**compare(refs, outs, tol), "runtime": "tensorrt"},
                                        extra={"gpu": gpu, "tensorrt": version, "profile": {
                                            k: [list(s) for s in v] for k, v in profile.items()}}))

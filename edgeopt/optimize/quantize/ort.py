"""ONNX Runtime INT8: static QDQ (per-channel weights; with symmetric activations TensorRT-ready:
int8, zero points 0) and dynamic quantization, both through onnxruntime.quantization."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.onnx_graph import name_unnamed_nodes

WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
# Static QDQ also covers residual Adds and pooling so int8 flows between convolutions without a
# float round trip (PhotoResNet: ~5 % faster in ORT at equal top-1); Softmax / LayerNorm stay
# float, which is where stock quantize_static loses transformers (docs/PERFORMANCE.md).
STATIC_OPS = (*WEIGHT_OPS, "Add", "Relu", "ReduceMean", "GlobalAveragePool", "MaxPool", "AveragePool")


class _Reader:
    """CalibrationDataReader over single samples (no padding enters the statistics)."""

    def __init__(self, data: Dataset, names: list[str], progress=None):
        self.data, self.names, self.i, self.progress = data, names, 0, progress

    def get_next(self):
        if self.i >= len(self.data):
            return None
        sample = self.data.samples[self.i]
        self.i += 1
        if self.progress and (self.i % 16 == 0 or self.i == len(self.data)):
            self.progress(f"calibrating: {self.i}/{len(self.data)} samples")
        return {n: sample[n] for n in self.names}

    def rewind(self):
        self.i = 0

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)

    def __len__(self):
        return len(self.data)


@contextlib.contextmanager
def quiet_root_logger(level: int = logging.ERROR):
    """Library chatter stays off stdout (``--json`` owns it): onnxruntime.quantization logs advice
    on the root logger, NNCF logs on its own and draws progress bars on stdout (sent to stderr).
    Root handlers a library adds meanwhile are taken off again (onnxruntime's
    matmul_nbits_quantizer calls ``logging.basicConfig(level=INFO)`` on import)."""
    import sys

    root, nncf_log = logging.getLogger(), logging.getLogger("nncf")
    levels, handlers = (root.level, nncf_log.level), list(root.handlers)
    root.setLevel(level)
    nncf_log.setLevel(level)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)
        root.setLevel(levels[0])
        nncf_log.setLevel(levels[1])


def weight_nodes(model, op_types=WEIGHT_OPS) -> list[str]:
    """Names of the nodes of ``model`` (a ModelProto) whose second input is a constant weight
    (what INT8 mostly speeds up)."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return [n.name for n in model.graph.node
            if n.op_type in op_types and len(n.input) > 1 and n.input[1] in consts]


def named_weight_nodes(src: Path, dst: Path) -> tuple[Path, list[str]]:
    """Quantizer options address nodes by name: ``src``, or ``dst`` written with stable names for
    its unnamed nodes, and its :func:`weight_nodes` (one read of the file for both)."""
    import onnx

    model = onnx.load(str(src))
    if all(n.name for n in model.graph.node):
        return src, weight_nodes(model)
    name_unnamed_nodes(model)
    onnx.save(model, str(dst))
    return dst, weight_nodes(model)


def quantize_static_qdq(fp32: Path, out: Path, calib: Dataset, *, method: str = "minmax",
                        per_channel: bool = True, exclude: list[str] = (), op_types=STATIC_OPS,
                        cache: Path | None = None, extra: dict | None = None, progress=None,
                        symmetric: bool = True) -> Path:
    """onnxruntime's static quantizer to QDQ: uint8 activations, per-channel int8 weights.

    ``symmetric`` (TensorRT-ready): activation zero point 128, an exact shift to TensorRT's int8 /
    zero point 0 (qdq.py). Asymmetric activations are for onnxruntime alone: a ReLU output then
    gets zero point 0, onnxruntime folds the ReLU into the quantized conv before it, and no float
    round trip is left between convolutions (PhotoResNet: 0.293x FP32 latency vs 0.375x symmetric,
    top-1 within 0.15 points, docs/PERFORMANCE.md).

    Weights in a 7-bit range (``reduce_range``): on x86 CPUs without VNNI onnxruntime's U8S8 kernels
    add pairs of uint8 x int8 products in int16, which saturates with 8-bit weights (per_token.py).
    PhotoResNet on an AMD EPYC without VNNI, 1500 test photos: top-1 0.102 with 8-bit weights,
    0.849 with 7-bit ones, FP32 0.851. Still int8 with zero points 0, so still TensorRT-ready."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edgeopt.models.onnx_file import onnx_io

    names = onnx_io(fp32).input_names
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    options = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, **(extra or {})}
    with quiet_root_logger():
        quantize_static(str(fp32), str(out), _Reader(calib, names, progress), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types), per_channel=per_channel, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), calibrate_method=methods[method],
                        extra_options=options, calibration_cache_path=str(cache) if cache else None)
    return out


def nncf_qdq(fp32: Path, out: Path, calib: Dataset, *, transformer: bool, exclude: list[str] = ()) -> Path:
    """NNCF post-training quantization of the ONNX graph into QDQ (its SmoothQuant and transformer
    rules keep MiniLM-class models near FP32), symmetric so TensorRT can take it, then re-encoded
    with uint8 activations for onnxruntime's fast kernels (an exact rewrite, qdq.py)."""
    import nncf
    import onnx

    from edgeopt.models.onnx_file import onnx_io
    from edgeopt.optimize.quantize.qdq import shift_file

    names = onnx_io(fp32).input_names
    dataset = nncf.Dataset(list(calib.samples), lambda s: {n: s[n] for n in names})
    kwargs = {"subset_size": len(calib), "preset": nncf.QuantizationPreset.PERFORMANCE}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if exclude:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(exclude), validate=False)
    with quiet_root_logger():
        quantized = nncf.quantize(onnx.load(str(fp32)), dataset, **kwargs)
    raw = out.with_name(out.stem + ".s8.onnx")
    onnx.save(quantized, str(raw))
    shift_file(raw, out, to="uint8")
    raw.unlink()
    return out


DYNAMIC_WEIGHTS = "int8 per output channel, 7-bit range"  # quantize_dynamic_int8's, for the manifest


def quantize_dynamic_int8(fp32: Path, out: Path, *, per_token: list[str] = ()) -> Path:
    """Dynamic INT8 (activation scales computed per call); the ``per_token`` nodes get per-token
    scales instead (per_token.py), which survives one-token activation outliers. Gather is
    included: embedding tables become int8 (MiniLM: 58 -> 22 MB at equal quality).

    Weights per output channel with 7-bit range (``reduce_range``): onnxruntime's U8S8 kernel on
    x86 CPUs without VNNI sums pairs of uint8 x int8 products in int16, which saturates with 8-bit
    weights (per_token.py). MiniLM's smoothed fused graph, 400 Myntra titles one per call, AMD EPYC
    without VNNI, no node per token: cosine mean / min 0.9662 / 0.9377 per tensor (the stock
    default), 0.9940 / 0.9867 per channel, 0.9950 / 0.9904 per channel in 7 bits. onnxruntime runs
    per-channel weights 4-13 % slower (benchmarks/int8_weights.py), but the gate then needs no
    per-token node where it needed 5, and the model is faster: 0.857x stock dynamic INT8 on titles
    instead of 0.868x, 0.864x instead of 0.905x at 64 tokens (docs/PERFORMANCE.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgeopt.optimize.quantize.per_token import per_token_file

    with quiet_root_logger():
        # Attention / EmbedLayerNormalization: onnxruntime's fused transformer ops (ort_fused.py),
        # which it quantizes to QAttention / QEmbedLayerNormalization; shape inference cannot type
        # their outputs, hence DefaultTensorType.
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, nodes_to_exclude=list(per_token),
                         op_types_to_quantize=["MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization"],
                         per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    if per_token:
        per_token_file(out, out, list(per_token))
    return out


BLOCK_SIZES = (128, 64, 32)  # blockwise INT8, tried coarse (fastest) to fine (closest to FP32)


def quantize_blockwise(fp32: Path, out: Path, block_size: int) -> int:
    """Blockwise INT8 through onnxruntime's ``MatMulNBitsQuantizer``: every MatMul with a constant
    weight becomes a ``MatMulNBits`` node with 8-bit symmetric weights, one scale per block of
    ``block_size`` input channels, and ``accuracy_level`` 4: onnxruntime quantizes the activations
    to int8 per block of each row at run time and multiplies in int8. Returns how many MatMuls were
    converted (0: none had a constant weight).

    The finest INT8 form onnxruntime runs on CPU, and the gate's last rung for transformers, after
    dynamic INT8 with per-token nodes and SmoothQuant: a scale per block of each row, finer than per
    token, with no search.
    MiniLM, 500 held-out Myntra titles: cosine 0.9997 / min 0.9995 and strict neighbour agreement
    0.982 with blocks of 32, where dynamic INT8 keeps 0.91. Its speed depends on the CPU: 0.76-0.89x
    FP32 with blocks of 32 on an AMD EPYC with AVX-512 VNNI, 1.5-1.6x at 64 tokens on one with AVX2
    only (docs/PERFORMANCE.md), so the speed check decides whether it is kept."""
    import onnx

    with quiet_root_logger():  # takes off the handler (and the INFO level) its basicConfig sets on import
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    with quiet_root_logger():
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4, bits=8)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=8, block_size=block_size, is_symmetric=True,
                                         accuracy_level=4, algo_config=config)
        quantizer.process()
    model = quantizer.model.model
    converted = sum(n.op_type == "MatMulNBits" for n in model.graph.node)
    if converted:
        onnx.save(model, str(out))
    return converted


class DynamicVariants:
    """Dynamic INT8 of one FP32 graph with any set of MatMuls per token, for the gate's search:
    quantized once (``quantize_dynamic_int8``), then each variant takes its per-token nodes out of
    that model again (per_token.float_matmuls) and rewrites them. The same model as
    ``quantize_dynamic_int8(fp32, out, per_token=nodes)``, in a fraction of the time; a node the
    quantizer did not make in its usual pattern (not a MatMul) takes that slow way."""

    def __init__(self, fp32: Path, base: Path):
        self.fp32, self.base = fp32, quantize_dynamic_int8(fp32, base)
        self._models = None

    def __call__(self, per_token: list[str], out: Path) -> Path:
        import shutil

        import onnx

        from edgeopt.optimize.quantize.per_token import float_matmuls, per_token_matmuls

        if not per_token:
            shutil.copyfile(self.base, out)
            return out
        if self._models is None:
            self._models = onnx.load(str(self.base)), onnx.load(str(self.fp32))
        model = onnx.ModelProto()
        model.CopyFrom(self._models[0])
        if set(float_matmuls(model, self._models[1], list(per_token))) != set(per_token):
            return quantize_dynamic_int8(self.fp32, out, per_token=per_token)
        per_token_matmuls(model, list(per_token))
        onnx.save(model, str(out))
        return out


def _sqnr(x: list[np.ndarray], y: list[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio in dB over all samples (ragged shapes allowed)."""
    a = np.concatenate([np.asarray(v, np.float64).ravel() for v in x])
    b = np.concatenate([np.asarray(v, np.float64).ravel() for v in y])
    return float(20 * np.log10(max(np.linalg.norm(a), 1e-30) / max(np.linalg.norm(a - b), 1e-30)))


def qdq_sensitivity(fp32: Path, qdq: Path, calib: Dataset, nodes: list[str], n_samples: int = 16) -> list[str]:
    """Rank ``nodes`` (most sensitive first) by the quantization noise of their inputs.

    onnxruntime's qdq_loss_debug records each activation before QuantizeLinear and after
    DequantizeLinear in the QDQ model: their signal-to-quantization-noise ratio is the node's
    *local* error, independent of what earlier layers did. Weights are compared the same way.
    A node's score is its worst input.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgeopt.models.onnx_file import onnx_io

    names = onnx_io(fp32).input_names
    debug = qdq.with_name(qdq.stem + ".debug.onnx")
    modify_model_output_intermediate_tensors(str(qdq), str(debug))
    try:
        acts = collect_activations(str(debug), _Reader(Dataset(calib.samples[:n_samples]), names))
    finally:
        debug.unlink(missing_ok=True)
    with quiet_root_logger(logging.CRITICAL):  # it logs an error for every DQ it does not match
        weights = create_weight_matching(str(fp32), str(qdq))
    model = onnx.load(str(qdq), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    wanted, score = set(nodes), {}
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        sqnr = []
        for inp in node.input:
            dq = producer.get(inp)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in acts and inp in acts:
                sqnr.append(_sqnr(acts[q.input[0]], acts[inp]))
            else:
                w = weights.get(dq.input[0].removesuffix("_quantized"))
                if w is not None:
                    sqnr.append(_sqnr([w["float"]], [w["dequantized"]]))
        if sqnr:
            score[node.name] = min(sqnr)
    return sorted(score, key=score.get)


def _dynamic_roundtrip(x: np.ndarray) -> np.ndarray:
    """What DynamicQuantizeLinear does to a MatMul input at run time: one uint8 range per call
    (per tensor, asymmetric, always containing 0), then back to float."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def intermediate_values(fp32, tensors: list[str], samples) -> Iterator[list[np.ndarray]]:
    """Run the FP32 model (a path, or a ModelProto, left as it was) on each sample with ``tensors``
    exposed as outputs (graph optimizations off, so every named tensor still exists); yield their
    values, in ``tensors`` order."""
    import onnx
    import onnxruntime as ort

    model = fp32 if isinstance(fp32, onnx.ModelProto) else onnx.load(str(fp32))
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    outputs = {o.name for o in model.graph.output}
    kept = len(model.graph.output)
    for name in tensors:
        if name not in outputs:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        serialized = model.SerializeToString()
    finally:
        del model.graph.output[kept:]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    del serialized
    for sample in samples:
        yield session.run(list(tensors), {n: sample[n] for n in names})


def dynamic_sensitivity(fp32: Path, calib: Dataset, nodes: list[str], n_samples: int = 16) -> list[str]:
    """Rank ``nodes`` (most sensitive first) for dynamic INT8: the signal-to-noise ratio of each
    node's activation input after a per-call uint8 round trip, on single calibration samples.

    One FP32 run with the inputs exposed as outputs, no quantized model needed: the local error that
    per-token scaling (per_token.py) removes. Activations with a few huge rows (the [CLS] token's
    outlier channels) have a low ratio.
    """
    import onnx

    model = onnx.load(str(fp32), load_external_data=False)
    wanted = set(nodes)
    act = {n.name: n.input[0] for n in model.graph.node if n.name in wanted}
    fetch = list(dict.fromkeys(act.values()))
    clean = {t: [] for t in fetch}
    noisy = {t: [] for t in fetch}
    for values in intermediate_values(fp32, fetch, calib.samples[:n_samples]):
        for t, value in zip(fetch, values):
            clean[t].append(value)
            noisy[t].append(_dynamic_roundtrip(np.asarray(value, np.float32)))
    score = {node: _sqnr(clean[t], noisy[t]) for node, t in act.items()}
    return sorted(score, key=score.get)

"""SmoothQuant channel scaling in front of per-token dynamic INT8: the dynamic gate's last rung.

Why: per-token scales (per_token.py) survive one *token* whose activations are all large. They do
not survive a few *channels* that are large on every token, as in BERT-style LayerNorm outputs: each
token's range is then set by its outlier channels and its other channels get a few levels. Dividing
input channel j by s_j and multiplying weight row j by s_j leaves ``X @ W`` unchanged in exact
arithmetic and moves the spread into the weights, which are quantized per output column offline.
``s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)`` (SmoothQuant, Xiao et al., 2023), with
``max|X_j|`` over calibration samples.

Why not the libraries' SmoothQuant: NNCF applies it only inside ``nncf.quantize`` (static INT8),
and onnxruntime.quantization's ``SmoothQuant`` option exists only for ``quantize_static`` (through
Intel Neural Compressor); neither smooths a graph for ``quantize_dynamic`` or per-token kernels.

The division stays an explicit ``Mul`` in front of each node: a LayerNorm output in these graphs
also feeds the residual path, so the scale cannot be folded into its gamma.

Measured on MiniLM, onnxruntime's fused-attention graph, every MatMul per token, 500 held-out
Myntra titles (docs/PERFORMANCE.md): cosine mean / min 0.9952 / 0.9924 without smoothing,
0.9981 / 0.9968 with alpha 0.5 on the MatMuls and the fused Attention input, at ~1.2x stock
``quantize_dynamic`` latency instead of ~1.1x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.onnx_graph import drop_unused_initializers

ALPHA = 0.5  # MiniLM: 0.4-0.7 measured within 0.0004 cosine of each other; 0.5 is the paper's default
_LIMIT = 1e4  # scale clamp: a dead channel must not turn into an inf


def smoothable(model) -> dict[str, tuple[str, str]]:
    """Node name -> (activation input, weight initializer) for MatMuls with a constant 2-D float
    weight ``[K, N]`` and onnxruntime's fused ``Attention`` (weight ``[hidden, 3 * hidden]``)."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Attention") or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is not None and w.data_type == onnx.TensorProto.FLOAT and len(w.dims) == 2:
            found[node.name] = (node.input[0], node.input[1])
    return found


# ops whose output[0] is a LayerNorm output: onnxruntime's fused ones (export/ort_fused.py) and ONNX's
LAYERNORM_OPS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                 "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")


def layernorm_fed(model, targets: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """The smoothable nodes (of ``targets``, default :func:`smoothable`) whose activation is a
    LayerNorm output, where BERT-style outlier channels live: in MiniLM's fused graph the 6
    Attention nodes and the 6 FFN-in MatMuls."""
    producer = {n.output[0]: n for n in model.graph.node if n.output}
    return [name for name, (x, _) in (smoothable(model) if targets is None else targets).items()
            if x in producer and producer[x].op_type in LAYERNORM_OPS]


def channel_absmax(fp32, calib: Dataset, tensors: list[str], n_samples: int = 128) -> dict[str, np.ndarray]:
    """Per-channel (last axis) absolute maximum of each named tensor over single calibration
    samples; ``fp32``: a path or a ModelProto (left as it was). Samples of one length run together
    (the maximum is over every token of every sample), one by one for a model that takes no batch."""
    from edgeopt.optimize.quantize.ort import intermediate_values

    samples = calib.samples[:n_samples]
    try:
        return _absmax(intermediate_values(fp32, tensors, (f for _, f in calib.same_shape_batches(samples=samples))),
                       tensors)
    except Exception:  # noqa: BLE001 - e.g. a fixed batch size of 1
        return _absmax(intermediate_values(fp32, tensors, samples), tensors)


def _absmax(runs, tensors: list[str]) -> dict[str, np.ndarray]:
    amax: dict[str, np.ndarray] = {}
    for values in runs:
        for name, v in zip(tensors, values):
            m = np.abs(np.asarray(v, np.float32)).reshape(-1, v.shape[-1]).max(axis=0)
            amax[name] = np.maximum(amax[name], m) if name in amax else m
    return amax


def scales(x_absmax: np.ndarray, w: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """SmoothQuant's per-input-channel scale for weight ``w [K, N]``; 1 where a channel is all zero."""
    w_absmax = np.abs(w).max(axis=1)
    ok = (x_absmax > 0) & (w_absmax > 0)
    s = np.where(ok, np.maximum(x_absmax, 1e-30) ** alpha / np.maximum(w_absmax, 1e-30) ** (1 - alpha), 1.0)
    return np.clip(s, 1 / _LIMIT, _LIMIT).astype(np.float32)


def smooth_file(src: Path, dst: Path, calib: Dataset, *, alpha: float = ALPHA, n_samples: int = 128,
                layernorm_only: bool = False) -> list[str]:
    """Write ``src`` with every smoothable node (only the :func:`layernorm_fed` ones with
    ``layernorm_only``) scaled (FP32, same outputs); return their names. Nothing to smooth: nothing
    written, ``[]``."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    targets = smoothable(model)
    if layernorm_only:
        targets = {k: targets[k] for k in layernorm_fed(model, targets)}
    if not targets:
        return []
    amax = channel_absmax(model, calib, list(dict.fromkeys(x for x, _ in targets.values())), n_samples)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.name in targets:
            x, w_name = targets[node.name]
            w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
            s = scales(amax[x], w, alpha)
            # a weight shared by two nodes would be scaled twice: give this node its own copy
            scaled = f"{node.name}/smooth_W"
            model.graph.initializer.extend([numpy_helper.from_array(w * s[:, None], scaled),
                                            numpy_helper.from_array(1 / s, f"{node.name}/smooth_inv")])
            nodes.append(helper.make_node("Mul", [x, f"{node.name}/smooth_inv"], [f"{node.name}/smooth_x"],
                                          name=f"{node.name}/smooth_Mul"))
            node.input[0], node.input[1] = f"{node.name}/smooth_x", scaled
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    drop_unused_initializers(model)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return list(targets)

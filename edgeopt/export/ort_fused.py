"""An onnxruntime-only FP32 graph of a Hugging Face transformer, with fused attention, for INT8.

onnxruntime's transformer optimizer fuses attention into its Attention op (and embeddings and
LayerNorms into EmbedLayerNormalization / SkipLayerNormalization), which quantize_dynamic turns
into QAttention. It recognises the attention of the *eager* implementation only: transformers'
default (sdpa) exports a mask pattern it does not match (0 Attention fused). model.onnx is traced
with eager attention (export/onnx.py) and optimized here, in memory (a model traced otherwise is
traced once more with eager attention), then checked against the source on the sample inputs with
model.onnx's tolerance; the result feeds the dynamic INT8 candidate (MiniLM: ~13 % faster than the
unfused graph at equal quality, docs/PERFORMANCE.md). model.onnx stays the portable, unfused FP32
artifact.

One fusion is undone (:func:`split_skip_layernorm`): onnxruntime's CPU SkipLayerNormalization
kernel is a scalar loop with a division per element. MiniLM's 12 of them took 1.02 ms per 64-token
call on the AMD EPYC here, the split form 0.46 ms (benchmarks/ort_floor.py, docs/PERFORMANCE.md).
The residual is written as a two-input ``Sum``: onnxruntime's SkipLayerNormFusion matches ``Add``
only, so it cannot fuse the pair back when a session loads.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from edgeopt.errors import first_line
from edgeopt.models.base import LoadedModel
from edgeopt.onnx_graph import name_unnamed_nodes

# onnxruntime.transformers model types by Hugging Face config.model_type (encoders it fuses)
OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                   "electra": "bert", "mpnet": "bert"}


def _eager_graph(model: LoadedModel, exported: Path | None):
    """The ONNX graph traced with eager attention: ``exported`` (model.onnx, traced so by
    export/onnx.py) read back, or the module traced once more, in memory."""
    import onnx

    from edgeopt.export.onnx import eager_attention, torchscript_export

    if exported is not None:
        return onnx.load(str(exported))
    buffer = io.BytesIO()
    with eager_attention(model.module) as eager:
        if not eager:
            raise RuntimeError("the model cannot switch to eager attention")
        torchscript_export(model, buffer)
    return onnx.load_from_string(buffer.getvalue())


def _head_counts(hf_model) -> list[int]:
    from edgeopt.models.hf_layers import encoder_layers

    return [L.heads for L in encoder_layers(hf_model)]


def fused_fp32(model: LoadedModel, out: Path, feeds: list[dict], refs: list[dict],
               exported: Path | None = None) -> tuple[Path | None, dict]:
    """Write the fused graph to ``out``; returns (path or None, a report for the manifest).
    ``exported``: model.onnx when it was traced with eager attention, else None (traced here)."""
    from edgeopt.export.onnx import HF_FAMILIES
    from edgeopt.models.hf_layers import pretrained

    if model.module is None or model.family not in HF_FAMILIES:
        return None, {"fused": False, "reason": f"not a Hugging Face transformer ({model.family})"}
    hf_model = pretrained(model.module)
    kind = OPTIMIZER_TYPES.get(getattr(getattr(hf_model, "config", None), "model_type", None))
    if hf_model is None or kind is None or not hasattr(hf_model, "set_attn_implementation"):
        return None, {"fused": False, "reason": "no onnxruntime fusion for this architecture"}
    heads = _head_counts(hf_model)
    if any(h != int(hf_model.config.num_attention_heads) for h in heads):
        # the eager trace reshapes to (-1, head_size), so the optimizer takes the head count from the
        # config: one count for all layers, which a head-pruned model does not have
        return None, {"fused": False, "reason": f"attention heads per layer {heads} differ from the config's "
                                                f"{hf_model.config.num_attention_heads} (pruned)"}
    import onnx
    from onnxruntime.transformers import optimizer

    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            graph = _eager_graph(model, exported)
            config = hf_model.config
            optimized = optimizer.optimize_model(graph, model_type=kind, num_heads=int(config.num_attention_heads),
                                                 hidden_size=int(config.hidden_size), opt_level=0)
        stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        if not stats.get("Attention"):
            return None, {"fused": False, "reason": "onnxruntime's optimizer fused no attention", "ops": stats}
        stats["SkipLayerNormalization split"] = split_skip_layernorm(optimized.model)
        optimized.topological_sort()  # as saving does; then name the nodes the optimizer left unnamed
        name_unnamed_nodes(optimized.model)
        optimized.save_model_to_file(str(out))  # which also declares the com.microsoft opset
        onnx.checker.check_model(str(out))
    except Exception as e:  # noqa: BLE001 - an optional speed-up: any failure keeps the plain graph
        out.unlink(missing_ok=True)
        return None, {"fused": False, "reason": f"{type(e).__name__}: {first_line(e, 160)}"}
    from edgeopt.export.verify import Tolerance, compare
    from edgeopt.backends import get_runtime

    session = get_runtime("onnxruntime").load(str(out))
    check = compare(refs, [session.run(f) for f in feeds], Tolerance.for_artifact("onnx", "fp32"))
    worst = check["max_abs_diff"]
    if not check["passed"]:
        out.unlink(missing_ok=True)
        return None, {"fused": False, "reason": f"fused graph differs from the source by {worst:.2e}"}
    return out, {"fused": True, "ops": stats, "max_abs_diff": worst}


def split_skip_layernorm(model) -> int:
    """Replace each SkipLayerNormalization(input, skip, gamma, beta, bias) by Add(input, bias),
    Sum(that, skip) and LayerNormalization(gamma, beta): the same arithmetic in faster kernels.

    The bias Add stays an ``Add`` so that onnxruntime fuses it into the MatMul in front (its
    DynamicQuantizeMatMul takes a bias); the residual is a ``Sum``, which SkipLayerNormFusion does
    not match. A node whose mean / inverse-std outputs are read is kept. Returns the number split.
    """
    from onnx import helper

    read = ({i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}) - {""}
    nodes, split = [], 0
    for node in model.graph.node:
        outs = list(node.output) + [""] * (4 - len(node.output))
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft" or \
                outs[1] in read or outs[2] in read:
            nodes.append(node)
            continue
        ins = list(node.input) + [""] * (5 - len(node.input))
        x, skip, gamma, beta, bias = ins[:5]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        base = f"{node.name or 'SkipLayerNormalization'}/split{split}"  # unique even for unnamed nodes
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [f"{base}/biased"], name=f"{base}/bias"))
            x = f"{base}/biased"
        total = outs[3] or f"{base}/residual"
        nodes.append(helper.make_node("Sum", [x, skip], [total], name=f"{base}/residual"))
        nodes.append(helper.make_node("LayerNormalization", [total, gamma] + ([beta] if beta else []), [outs[0]],
                                      name=f"{base}/layernorm", axis=-1, epsilon=eps))
        split += 1
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return split

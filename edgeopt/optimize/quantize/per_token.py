"""Per-token (per-row) dynamic INT8 for selected MatMul nodes, as a plain ONNX graph rewrite.

Why: ``onnxruntime.quantization.quantize_dynamic`` quantizes each MatMul activation with ONE scale
per tensor. Transformer FFN inputs (e.g. MiniLM's GELU output feeding ``output/dense``) carry a huge
outlier on a single token ([CLS]: absmax ~25 vs ~3 elsewhere), so one scale wastes most of the int8
range on every other token. Giving each row (token) its own scale removes that damage while keeping
the integer kernels, so the accuracy gate can try this before falling back to FP32.

The rewrite works on a FP32 ``MatMul`` whose second input is a constant 2-D initializer ``W [K, N]``.
That node may sit in an FP32 graph or in a ``quantize_dynamic`` graph where it was left in FP32 via
``nodes_to_exclude`` (the intended use: quantize everything else with onnxruntime's dynamic INT8, exclude the
sensitive MatMuls, then rewrite those per token). Already-quantized nodes (``DynamicQuantizeMatMul``
/ ``MatMulInteger``) are not touched. Weights are quantized offline per output column (symmetric int8).

Two kernels (``kernel=``):

* ``"dqmm"`` (default): ``s = max(ReduceMax(|X|, -1), tiny)``; ``Y = DynamicQuantizeMatMul(X / s, Wq,
  w_scale, 0) * s``. Every row of ``X / s`` has absmax 1, so ORT's per-tensor dynamic quantization of
  it *is* a per-row quantization (asymmetric uint8, a bonus for one-sided GELU outputs), and it runs
  in ORT's fused U8S8 kernel. Only Abs, ReduceMax, Max, Div and Mul are added per node.
* ``"integer"``: the explicit form with standard ops: ``Xq = Cast<uint8>(Clip(Round(X / s) + 128, 1,
  255))`` with ``s = absmax / 127``; ``Y = Cast<float>(MatMulInteger(Xq, Wq, 128, 0)) * s * w_scale``.
  Kept for runtimes without the com.microsoft contrib ops; slower on ORT CPU (more unfused ops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeopt.onnx_graph import drop_unused_initializers

KERNELS = ("dqmm", "integer")
_TINY = 1e-12  # all-zero rows: avoid 0/0; their output is 0 either way


W_MAX = 63  # 7-bit weights: see _quantize_weight


def _quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-column int8 in [-63, 63]: ``W ~= Wq * scale[None, :]``.

    7 bits, not 8: on x86 CPUs without VNNI (AVX2 only) onnxruntime's U8S8 kernel sums pairs of
    uint8 x int8 products in int16 (``vpmaddubsw``), which saturates above 32767; 2 x 255 x 63
    cannot. Per-token scales put many activations near 255, and with 8-bit weights the per-token
    error on an AMD EPYC without VNNI was 0.37x per-tensor instead of < 0.25x. The artifact may run
    on such a CPU whatever the exporting machine has, so the weights are 7-bit everywhere."""
    scale = np.abs(w).max(axis=0) / W_MAX
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -W_MAX, W_MAX).astype(np.int8)
    return q, scale


def _opset(model: onnx.ModelProto, domain: str = "") -> int:
    for o in model.opset_import:
        if o.domain in (domain, "ai.onnx" if domain == "" else domain):
            return o.version
    return 0


def per_token_matmuls(model: onnx.ModelProto, nodes: list[str], kernel: str = "dqmm") -> int:
    """Rewrite the named FP32 ``MatMul`` nodes (constant 2-D float weight) in place to per-token
    dynamic INT8; return how many were rewritten. Names that are missing, not a MatMul, or whose
    weight is not a constant float matrix are skipped (the count tells the caller)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    wanted, done = set(nodes), 0
    axes_as_input = _opset(model) >= 18  # ReduceMax took axes as an attribute before opset 18
    new_nodes: list[onnx.NodeProto] = []
    for node in g.node:
        w_init = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if node.name not in wanted or w_init is None or w_init.data_type != onnx.TensorProto.FLOAT \
                or len(w_init.dims) != 2:
            new_nodes.append(node)
            continue
        p = node.name.rstrip("/") + "/pt_"
        x, y = node.input[0], node.output[0]
        wq, wscale = _quantize_weight(numpy_helper.to_array(w_init).astype(np.float32))
        n_out = wq.shape[1]
        g.initializer.extend([numpy_helper.from_array(wq, p + "Wq"),
                              numpy_helper.from_array(wscale, p + "w_scale"),
                              numpy_helper.from_array(np.array(_TINY, np.float32), p + "tiny")])
        out: list[onnx.NodeProto] = [helper.make_node("Abs", [x], [p + "abs"], name=p + "Abs")]
        if axes_as_input:
            g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), p + "axes"))
            out.append(helper.make_node("ReduceMax", [p + "abs", p + "axes"], [p + "amax"], keepdims=1,
                                        name=p + "ReduceMax"))
        else:
            out.append(helper.make_node("ReduceMax", [p + "abs"], [p + "amax"], axes=[-1], keepdims=1,
                                        name=p + "ReduceMax"))
        if kernel == "dqmm":
            g.initializer.append(numpy_helper.from_array(np.zeros(n_out, np.int8), p + "w_zp"))
            out += [
                helper.make_node("Max", [p + "amax", p + "tiny"], [p + "s"], name=p + "Max"),
                helper.make_node("Div", [x, p + "s"], [p + "xn"], name=p + "Div"),
                helper.make_node("DynamicQuantizeMatMul", [p + "xn", p + "Wq", p + "w_scale", p + "w_zp"],
                                 [p + "yn"], name=p + "DynamicQuantizeMatMul", domain="com.microsoft"),
                helper.make_node("Mul", [p + "yn", p + "s"], [y], name=p + "Mul"),
            ]
        else:
            for name, val in (("c127", np.array(127, np.float32)), ("c128", np.array(128, np.float32)),
                              ("lo", np.array(1, np.float32)), ("hi", np.array(255, np.float32)),
                              ("a_zp", np.array(128, np.uint8)), ("w_zp", np.zeros(n_out, np.int8))):
                g.initializer.append(numpy_helper.from_array(val, p + name))
            out += [
                helper.make_node("Div", [p + "amax", p + "c127"], [p + "s0"], name=p + "Div_s"),
                helper.make_node("Max", [p + "s0", p + "tiny"], [p + "s"], name=p + "Max"),
                helper.make_node("Div", [x, p + "s"], [p + "xs"], name=p + "Div"),
                helper.make_node("Round", [p + "xs"], [p + "xr"], name=p + "Round"),
                helper.make_node("Add", [p + "xr", p + "c128"], [p + "xo"], name=p + "Add"),
                helper.make_node("Clip", [p + "xo", p + "lo", p + "hi"], [p + "xc"], name=p + "Clip"),
                helper.make_node("Cast", [p + "xc"], [p + "xq"], to=onnx.TensorProto.UINT8,
                                 name=p + "Cast_u8"),
                helper.make_node("MatMulInteger", [p + "xq", p + "Wq", p + "a_zp", p + "w_zp"], [p + "y32"],
                                 name=p + "MatMulInteger"),
                helper.make_node("Cast", [p + "y32"], [p + "yf"], to=onnx.TensorProto.FLOAT,
                                 name=p + "Cast_f"),
                helper.make_node("Mul", [p + "yf", p + "s"], [p + "ys"], name=p + "Mul_s"),
                helper.make_node("Mul", [p + "ys", p + "w_scale"], [y], name=p + "Mul_w"),
            ]
        new_nodes += out
        done += 1
    if done:
        del g.node[:]
        g.node.extend(new_nodes)
        if kernel == "dqmm" and not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        # the original weight may now be unused: drop it if nothing else reads it
        drop_unused_initializers(model)
    return done


# what onnxruntime's quantize_dynamic makes of a MatMul with a constant weight (before or after its
# own fusion): only these may be taken out again by float_matmuls
_QUANTIZED_MATMUL_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "DynamicQuantizeMatMul",
                         "MatMulIntegerToFloat"}


def float_matmuls(quantized: onnx.ModelProto, fp32: onnx.ModelProto, nodes: list[str]) -> list[str]:
    """Put the named FP32 ``MatMul`` nodes of ``fp32`` back into ``quantized`` (``fp32`` after
    onnxruntime's ``quantize_dynamic``), in place of what the quantizer made of each; return the
    names that are FP32 MatMuls in ``quantized`` afterwards, so that per_token_matmuls can take them.

    Why: one ``quantize_dynamic`` run of MiniLM costs 1.3-2.9 s (shape inference, per-channel weight
    quantization, two saves of a 90 MB model); the gate's per-token search needs 5-7 variants that
    differ only in which MatMuls are per token. Quantizing once and taking the chosen nodes out
    again costs a copy of the 22 MB INT8 model.

    A node's quantized form is what lies between its activation input and its output: the nodes
    reached walking back from the output, stopping at the input and at initializers. A walk that
    meets another op type, or another graph input, is not the quantizer's pattern: that node is
    left as it is (not in the result). Of the quantizer's nodes, those that nothing reads any more
    are removed; one that still feeds another MatMul (a shared DynamicQuantizeLinear) stays."""
    g = quantized.graph
    names = set(nodes)
    wanted = {n.name: n for n in fp32.graph.node if n.name in names and n.op_type == "MatMul"}
    f_inits = {i.name: i for i in fp32.graph.initializer}
    q_inits = {i.name for i in g.initializer}
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    parts: set[int] = set()  # what the quantizer made of the restored nodes: removed once nothing reads it
    put: dict[int, onnx.NodeProto] = {}
    done = []
    for name, mm in wanted.items():
        x, w, y = mm.input[0], mm.input[1], mm.output[0]
        if w not in f_inits or y not in producer:
            continue
        last = producer[y]
        if g.node[last].op_type == "MatMul" and list(g.node[last].input) == [x, w]:
            done.append(name)  # not quantized (excluded, or not a quantizer's op type)
            continue
        part, stack, ok = set(), [last], len(g.node[last].output) == 1
        while stack and ok:
            i = stack.pop()
            if i in part:
                continue
            part.add(i)
            ok = g.node[i].op_type in _QUANTIZED_MATMUL_OPS and len(part) <= 8
            for t in g.node[i].input:
                if t in (x, "") or t in q_inits:
                    continue
                if t not in producer:
                    ok = False
                    break
                stack.append(producer[t])
        if not ok or not any(x in g.node[i].input for i in part):
            continue
        parts |= part
        put[last] = onnx.helper.make_node("MatMul", [x, w], [y], name=name)
        if w not in q_inits:
            g.initializer.append(f_inits[w])
            q_inits.add(w)
        done.append(name)
    if put:
        graph_out = {o.name for o in g.output}
        now = {i: put.get(i, n) for i, n in enumerate(g.node)}
        while True:  # the parts' nodes nothing reads any more (a shared DynamicQuantizeLinear stays while read)
            read = {t for n in now.values() for t in n.input} | graph_out
            dead = {i for i in parts - put.keys() if i in now and not read.intersection(now[i].output)}
            if not dead:
                break
            for i in dead:
                del now[i]
        del g.node[:]
        g.node.extend(now.values())
        live = {t for n in g.node for t in (*n.input, *n.output)} | graph_out
        used = [i for i in g.initializer if i.name in live]
        del g.initializer[:]
        g.initializer.extend(used)
        info = [v for v in g.value_info if v.name in live]
        del g.value_info[:]
        g.value_info.extend(info)
    return done


def per_token_file(src: Path, dst: Path, nodes: list[str], kernel: str = "dqmm") -> Path:
    """Load ``src``, rewrite ``nodes`` per token, save to ``dst`` (created parent); return ``dst``."""
    model = onnx.load(str(src))
    per_token_matmuls(model, nodes, kernel=kernel)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst

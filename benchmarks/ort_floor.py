"""MiniLM INT8 on onnxruntime: how far is the whole model from its GEMMs alone, and what does
SkipLayerNormalization cost? Side by side, each candidate in its own process.

    python benchmarks/ort_floor.py [--work DIR] [--rounds 20] [--json FILE]

Why: edgeopt's ORT INT8 and stock ``quantize_dynamic`` run the same INT8 GEMM kernel (onnxruntime's
MLAS U8S8). How much faster edgeopt can be is bounded by what is *not* a GEMM. This puts, in one
interleaved run (edgeopt/bench/interleave.py) on int8_minilm.py's two workloads ("64": one
64-token input; "titles": held-out titles one per call, each in its own length):

- stock ``quantize_dynamic`` and edgeopt's kept ``model.int8.onnx`` (both from int8_minilm.py's
  --work; run it first);
- **GEMM floor**: MiniLM's 24 INT8 GEMMs alone (per layer Q/K/V 384x1152, attention output
  384x384, FFN 384x1536 and 1536x384) as onnxruntime's DynamicQuantizeMatMul with 7-bit weights,
  chained as in the model, nothing else: what any dynamic-INT8 MiniLM on this kernel must spend;
- the same floor with MiniLM's other **unavoidable parts added one by one** (cumulative), each in
  the kernel edgeopt's kept model uses: **+ attention core** (the Q/K/V GEMM and the attention as
  onnxruntime's QAttention with a mask index, as the kept model runs it; the fastest of the forms
  tried, docs/PERFORMANCE.md), **+ GELU** (BiasGelu after the FFN input GEMM), **+ residual
  LayerNorms** (Sum + LayerNormalization after the attention output and the FFN output, the bias
  folded into the GEMM). The last is a whole MiniLM encoder without embedding, pooling or
  anything edgeopt adds for accuracy: how fast its INT8 could be with onnxruntime's CPU kernels;
- **12 SkipLayerNormalization** (MiniLM's count, width 384, with bias) against the same arithmetic
  as edgeopt writes it (Add bias, Sum residual, LayerNormalization; export/ort_fused.py), each
  loaded with onnxruntime's default optimizations.

The ratios are medians of per-round ratios to stock ``quantize_dynamic``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import int8_minilm as bench  # noqa: E402  (the same titles, workloads and timing protocol)

HIDDEN, FFN, LAYERS = 384, 1536, 6
SYNTHETIC = ("GEMM floor", "12 SkipLayerNormalization", "12 Add + Sum + LayerNormalization")
# the floor with MiniLM's other parts added cumulatively: name -> parts
LADDER = {"GEMM floor": (), "+ attention core (QAttention)": ("attention",), "+ GELU": ("attention", "gelu"),
          "+ residual LayerNorms": ("attention", "gelu", "layernorm")}


def gemm_floor_model(parts=()):
    """24 INT8 GEMMs chained as in MiniLM: per layer h -> attention output -> FFN in -> FFN out -> h,
    and h -> QKV. Without "attention" the QKV GEMM's output is read by a Shape only (computed,
    nothing copied); with it, QKV and the attention core are one QAttention (its input quantized
    by a DynamicQuantizeLinear, mask index = the sequence length) whose output feeds the attention
    output GEMM. "gelu" puts a BiasGelu after the FFN input GEMM; "layernorm" a residual Sum and a
    LayerNormalization after the attention output and the FFN output GEMMs."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, shapes = [], [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(value, name))
        return name

    def weight(k, n, name):
        w = rng.integers(-63, 64, (k, n)).astype(np.int8)  # 7-bit range, as edgeopt's weights
        scale = np.full(n, 1 / (36.4 * np.sqrt(k)), np.float32)  # outputs about as large as inputs
        return (const(f"{name}.w", w), const(f"{name}.scale", scale),
                const(f"{name}.zero", np.zeros(n, np.int8)), const(f"{name}.bias", np.zeros(n, np.float32)))

    def gemm(x, k, n, name, bias=True):
        w, scale, zero, b = weight(k, n, name)
        nodes.append(helper.make_node("DynamicQuantizeMatMul", [x, w, scale, zero] + ([b] if bias else []), [name],
                                      domain="com.microsoft"))
        return name

    def residual(y, skip, name):
        if "layernorm" not in parts:
            return y
        gamma = const(f"{name}.gamma", np.ones(HIDDEN, np.float32))
        beta = const(f"{name}.beta", np.zeros(HIDDEN, np.float32))
        nodes.append(helper.make_node("Sum", [y, skip], [f"{name}.sum"]))
        nodes.append(helper.make_node("LayerNormalization", [f"{name}.sum", gamma, beta], [f"{name}.ln"], axis=-1,
                                      epsilon=1e-12))
        return f"{name}.ln"

    if "attention" in parts:
        nodes.append(helper.make_node("Shape", ["x"], ["seq64"], start=1, end=2))
        nodes.append(helper.make_node("Cast", ["seq64"], ["mask_index"], to=TensorProto.INT32))
    h = "x"
    for i in range(LAYERS):
        if "attention" in parts:
            w, scale, zero, b = weight(HIDDEN, 3 * HIDDEN, f"l{i}.qkv")
            q = [f"l{i}.xq", f"l{i}.xs", f"l{i}.xz"]
            nodes.append(helper.make_node("DynamicQuantizeLinear", [h], q))
            nodes.append(helper.make_node("QAttention", [q[0], w, b, q[1], scale, "mask_index", q[2], zero],
                                          [f"l{i}.ctx"], domain="com.microsoft", num_heads=12))
            ctx = f"l{i}.ctx"
        else:
            qkv = gemm(h, HIDDEN, 3 * HIDDEN, f"l{i}.qkv")
            nodes.append(helper.make_node("Shape", [qkv], [f"l{i}.qkv_shape"]))
            shapes.append(f"l{i}.qkv_shape")
            ctx = h
        a = residual(gemm(ctx, HIDDEN, HIDDEN, f"l{i}.out"), h, f"l{i}.attn_ln")
        f = gemm(a, HIDDEN, FFN, f"l{i}.ffn_in", bias="gelu" not in parts)
        if "gelu" in parts:
            nodes.append(helper.make_node("BiasGelu", [f, f"l{i}.ffn_in.bias"], [f"l{i}.gelu"], domain="com.microsoft"))
            f = f"l{i}.gelu"
        h = residual(gemm(f, FFN, HIDDEN, f"l{i}.ffn_out"), a, f"l{i}.ffn_ln")
    outputs = [helper.make_tensor_value_info(h, TensorProto.FLOAT, [1, "seq", HIDDEN])]
    if shapes:
        nodes.append(helper.make_node("Concat", shapes, ["qkv_shapes"], axis=0))
        outputs.append(helper.make_tensor_value_info("qkv_shapes", TensorProto.INT64, [3 * LAYERS]))
    graph = helper.make_graph(nodes, "gemm_floor", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  [1, "seq", HIDDEN])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def layernorm_chain(split: bool):
    """12 residual LayerNorms as onnxruntime's fused op, or split as export/ort_fused.py writes them."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeopt.export.ort_fused import split_skip_layernorm

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), n)
             for n in ("gamma", "beta", "bias")]
    nodes, h = [], "x"
    for i in range(2 * LAYERS):
        nodes.append(helper.make_node("SkipLayerNormalization", [h, "skip", "gamma", "beta", "bias"], [f"h{i}"],
                                      name=f"sln{i}", domain="com.microsoft", epsilon=1e-12))
        h = f"h{i}"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "seq", HIDDEN]) for n in ("x", "skip", h)]
    model = helper.make_model(helper.make_graph(nodes, "layernorms", io[:2], io[2:], inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    if split:
        split_skip_layernorm(model)
    return model


def child(name: str, workload: str) -> None:
    """Own process: the synthetic model ``name`` on the workload's sequence lengths."""
    import onnxruntime as ort

    from edgeopt.bench.interleave import serve
    from edgeopt.runtime.text import TextEncoder

    out_dir = Path(os.environ["EDGEOPT_BENCH_OUT"])
    if workload == "titles":
        tok = TextEncoder(out_dir / "tokenizer", max_length=128)
        lengths = [tok([t])["input_ids"].shape[1] for t in bench.titles()[1][:bench.TITLE_CALLS]]
    else:
        lengths = [64]
    model = gemm_floor_model(LADDER[name]) if name in LADDER else layernorm_chain(split=name != SYNTHETIC[1])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    names = [i.name for i in session.get_inputs()]
    feeds = [{n: rng.standard_normal((1, s, HIDDEN)).astype(np.float32) for n in names} for s in lengths]
    cycle = itertools.cycle(feeds)
    serve(lambda: session.run(None, next(cycle)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=bench.ROOT / "benchmarks" / ".cache" / "int8_minilm")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("NAME", "WORKLOAD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    from edgeopt.bench.interleave import interleaved, ratios

    out = args.work / "edgeopt"
    models = {"stock ORT quantize_dynamic": args.work / "stock" / "dynamic.onnx",
              "edgeopt INT8 (ORT)": out / "model.int8.onnx"}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing or not bench.TITLES.is_file():
        sys.exit(f"skipped: run benchmarks/int8_minilm.py first (missing: {', '.join(missing) or bench.TITLES})")
    env = {**os.environ, "EDGEOPT_BENCH_OUT": str(out)}
    result = {"rounds": args.rounds, "tables": {}}
    for workload in ("64", "titles"):
        commands = {name: [sys.executable, bench.__file__, "--child", "onnxruntime", str(path), "int8", workload]
                    for name, path in models.items()}
        commands.update({name: [sys.executable, __file__, "--child", name, workload]
                         for name in (*LADDER, *SYNTHETIC[1:])})

        def progress(r, last):
            print(f"round {r + 1}: " + ", ".join(f"{n} {v:.2f}" for n, v in last.items()), flush=True)

        per = interleaved(commands, rounds=args.rounds, env=env, progress=progress)
        vs_stock = ratios(per, "stock ORT quantize_dynamic")
        vs_skip = ratios(per, SYNTHETIC[1])
        rows = [{"candidate": n, "p50_ms": round(float(np.median(v)), 3), "vs_stock_dynamic": round(vs_stock[n], 3),
                 "p50_per_round": [round(x, 3) for x in v]} for n, v in per.items()]
        split_row = next(r for r in rows if r["candidate"] == SYNTHETIC[2])
        split_row["vs_skip_layernorm"] = round(vs_skip[SYNTHETIC[2]], 3)
        result["tables"][workload] = rows
        print(f"\nworkload {workload}: {bench.WORKLOADS[workload]}")
        print("| candidate | p50 ms | / stock quantize_dynamic |")
        print("|---|---|---|")
        for r in rows:
            print(f"| {r['candidate']} | {r['p50_ms']} | {r['vs_stock_dynamic']} |")
        print(f"split / fused SkipLayerNormalization: {split_row['vs_skip_layernorm']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

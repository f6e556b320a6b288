"""all-MiniLM-L6-v2 with half its FFN neurons (and optionally some attention heads) pruned, recovered
by distillation on Home Depot product titles, scored as a store search.

    python benchmarks/prune_minilm.py [--ratio 0.5] [--head-ratio 0] [--train-titles 8000]
                                      [--recover-epochs 1] [--queries 1000] [--pool 20000] [--work DIR] [--json F]

Pruning: `edgeopt.prune.prune(..., structured=True)`: FFN neurons ranked by their mean |activation|
x output-weight norm on the training titles, globally across layers (kept counts rounded to
--round-to); heads by their contribution norm. Recovery: distillation from the unpruned model's
normalized sentence embedding (MSE) on --train-titles titles, no labels.
Scoring: the search of benchmarks/distill_minilm.py (held-out queries with a product judged
relevant, a pool of --pool titles, Recall@10 / NDCG@10); rows: unpruned, pruned without recovery,
pruned and recovered. With --rounds N (a quiet machine): the unpruned and the pruned model, each
exported to ONNX by `edgeopt export`, timed in onnxruntime in one interleaved run (each in its own
process, batch 1, 2 threads, a 64-token input and held-out titles one per call: the protocol of
benchmarks/int8_minilm.py; ratios are medians of per-round ratios).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from distill_minilm import (evaluate, read_homedepot, search_setup, st_encoder, start,  # noqa: E402
                            write_results, write_train_titles)

ROOT = Path(__file__).resolve().parents[1]


def edgeopt_encoder(folder: Path, batch: int = 64):
    """Embeddings of an edgeopt model folder (the pruned sentence-transformers folder), as load_model reads it."""
    from edgeopt.models import load_model

    model = load_model(folder)
    names = model.io.input_names

    def encode(texts):
        order = np.argsort([len(t) for t in texts])
        out = np.empty((len(texts), model.io.outputs[0].shape[-1]), np.float32)
        for s in range(0, len(texts), batch):
            idx = order[s:s + batch]
            enc = model.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=model.max_length, return_tensors="np")
            y = next(iter(model.reference({n: enc[n].astype("int64") for n in names}).values()))
            out[idx] = y
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratio", type=float, default=0.5, help="share of FFN neurons removed")
    ap.add_argument("--head-ratio", type=float, default=0.0, help="share of attention heads removed")
    ap.add_argument("--round-to", type=int)
    ap.add_argument("--train-titles", type=int, default=8000)
    ap.add_argument("--recover-epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--work", type=Path, default=Path("prune-minilm-work"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rounds", type=int, default=0, help="interleaved latency rounds (0: quality only)")
    ap.add_argument("--reuse", action="store_true", help="reuse WORK/pruned and WORK/recovered from an earlier run")
    ap.add_argument("--latency-only", action="store_true", help="with --reuse --rounds: time the models an earlier "
                    "run wrote, without scoring them again")
    args = ap.parse_args()
    log, work = start(args.work)
    from edgeopt.models.embedded import embedded_model_path
    from edgeopt.prune import prune

    model = embedded_model_path()
    if args.latency_only:
        import json

        pruned = work / ("recovered" if args.recover_epochs else "pruned")
        if not (args.reuse and args.rounds and (pruned / "report.json").is_file()):
            raise SystemExit(f"--latency-only needs --reuse, --rounds and an earlier run's {pruned}")
        lat = latency(model, pruned, work, args.rounds, log)
        (args.json or work / "latency.json").write_text(json.dumps(lat, indent=2) + "\n")
        return
    titles, judged = read_homedepot()
    queries, relevant, pool = search_setup(titles, judged, args.queries, args.pool)
    train_file, n_train, _ = write_train_titles(titles, args.train_titles, work)
    results = {"setup": {"queries": len(queries), "pool": len(pool), "train_titles": n_train,
                         "ratio": args.ratio, "head_ratio": args.head_ratio, "recover_epochs": args.recover_epochs},
               "rows": []}
    results["rows"].append(evaluate("unpruned", st_encoder(model), queries, relevant, pool, titles, log))
    common = dict(model=model, ratio=args.ratio, head_ratio=args.head_ratio, structured=True, round_to=args.round_to,
                  data=train_file, speed_check=False, batch_size=args.batch_size, log=log)
    import json

    def run(folder, **kw):
        if args.reuse and (folder / "report.json").is_file():
            return json.loads((folder / "report.json").read_text())
        return prune(out=folder, **common, **kw).report.to_json()

    rep = run(work / "pruned")
    results["widths"] = {k: w["after"] for k, w in rep["widths"].items()}
    results["round_to"] = rep["round_to"]
    results["params_ratio"] = rep["parameters"]["pruned"] / rep["parameters"]["unpruned"]
    results["rows"].append(evaluate("pruned, not recovered", edgeopt_encoder(work / "pruned"), queries, relevant, pool,
                                    titles, log))
    if args.recover_epochs:
        t0 = time.perf_counter()
        rep = run(work / "recovered", recover_epochs=args.recover_epochs)
        row = evaluate("pruned, recovered", edgeopt_encoder(work / "recovered"), queries, relevant, pool, titles, log)
        row.update(recover_minutes=round((time.perf_counter() - t0) / 60, 1),
                   heldout_cosine=rep["quality"]["after_recovery"]["cosine_mean"])
        results["rows"].append(row)
    if args.rounds:
        results["latency"] = latency(model, work / ("recovered" if args.recover_epochs else "pruned"), work,
                                     args.rounds, log)
    path = write_results(results, args.json or work / "results.json", width=30)
    print(f"parameters {results['params_ratio']:.2f}x; widths {results['widths']}; results: {path}")


def latency(model: Path, pruned: Path, work: Path, rounds: int, log) -> dict:
    import os
    import subprocess

    from int8_minilm import side_by_side

    edgeopt = str(Path(sys.executable).parent / "edgeopt")
    for src, dst in ((model, work / "unpruned-export"), (pruned, work / "pruned-export")):
        if not (dst / "model.onnx").is_file():
            subprocess.run([edgeopt, "export", str(src), "--to", "onnx", "-o", str(dst)], check=True,
                           capture_output=True)
    cands = {"ORT FP32": ("onnxruntime", str(work / "unpruned-export" / "model.onnx"), "fp32"),
             "ORT FP32 pruned": ("onnxruntime", str(work / "pruned-export" / "model.onnx"), "fp32")}
    env = {**os.environ, "EDGEOPT_BENCH_OUT": str(work / "unpruned-export")}
    out = {}
    for workload in ("64", "titles"):
        log(f"latency, workload {workload}: {rounds} interleaved rounds")
        out[workload] = side_by_side(cands, str(ROOT / "benchmarks" / "int8_minilm.py"), rounds, env, {},
                                     workload=workload)
        for row in out[workload]:
            log(f"  {row['candidate']:20s} p50 {row['p50_ms']:.2f} ms  {row['vs_ort_fp32']:.3f}x unpruned")
    return out


if __name__ == "__main__":
    main()

"""all-MiniLM-L6-v2 -> 2, 3 and 4-layer students, distilled without labels on Home Depot's product
titles, scored as a store search.

    python benchmarks/distill_minilm.py [--train-titles 8000] [--epochs 1] [--layers 2,3,4]
                                        [--queries 1000] [--pool 20000] [--int8] [--rounds N]
                                        [--prune-ffn R --prune-epochs N] [--work DIR] [--json FILE]

Data: ../shared/data/homedepot/train.csv.zip (latin-1): 74,067 judged (query, product) pairs.
Training: --train-titles unique product titles (a seeded sample of the ~53k; the catalogue's own
text, no labels), `edgeopt.distill.distill(..., student_layers=N)`: the student starts from N evenly
spaced layers of the teacher and learns the teacher's normalized sentence embedding (MSE);
10 % of the training titles are held out for the per-epoch evaluation.
Scoring: --queries search queries with at least one product judged relevant (relevance >= 2.5),
drawn with a fixed seed; queries are never trained on. Each query is searched against a pool of
--pool product titles that holds every product judged for any scored query, filled up with other
products. Recall@10 and NDCG@10 (binary gains: judged relevant) over the scored queries, for the
teacher, each untrained layer-dropped student (the baseline) and each distilled student.
With --int8: `edgeopt export STUDENT --int8 --to onnx` of the 3-layer student, the INT8 artifact
scored the same way (one text per call, as served), its gate measured against the teacher
(`--reference`). With --rounds N (a quiet machine): latency of the 3-layer student (FP32 and
edgeopt's INT8) against the teacher (FP32 and stock `quantize_dynamic` INT8) in one interleaved run,
each candidate in its own process, batch 1, 2 threads, a 64-token input and held-out titles one per
call (benchmarks/int8_minilm.py's protocol; ratios are medians of per-round ratios), with stock
`quantize_dynamic` of the student beside them. With --prune-ffn R: the chain distill -> prune, R of
the 3-layer student's FFN neurons removed (`edgeopt.prune.prune`, --prune-epochs of recovery on the
training titles), scored, and the one that --int8 exports and times.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
HOMEDEPOT = DATA / "homedepot" / "train.csv.zip"
RELEVANT = 2.5


def read_homedepot():
    with zipfile.ZipFile(HOMEDEPOT) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open("train.csv"), encoding="latin-1")))
    titles = {}
    judged: dict[str, dict[str, float]] = {}
    for r in rows:
        titles[r["product_uid"]] = r["product_title"].strip()
        judged.setdefault(r["search_term"].strip(), {})[r["product_uid"]] = float(r["relevance"])
    return titles, judged


def search_setup(titles, judged, n_queries: int, pool_size: int, seed: int = 0):
    """(queries, {query: relevant product ids}, pool product ids)."""
    rng = np.random.default_rng(seed)
    candidates = sorted(q for q, j in judged.items() if any(v >= RELEVANT for v in j.values()))
    queries = [candidates[i] for i in rng.permutation(len(candidates))[:n_queries]]
    pool = sorted({p for q in queries for p in judged[q]})
    if len(pool) > pool_size:
        raise SystemExit(f"{len(queries)} queries judge {len(pool)} products, more than --pool {pool_size}")
    others = sorted(set(titles) - set(pool))
    pool += [others[i] for i in rng.permutation(len(others))[:pool_size - len(pool)]]
    relevant = {q: {p for p, v in judged[q].items() if v >= RELEVANT} for q in queries}
    return queries, relevant, pool


def start(work_arg: Path):
    """(log, WORK) for a Home Depot benchmark: the shared data must be there; edgeopt importable."""
    if not HOMEDEPOT.is_file():
        raise SystemExit(f"shared data missing: {HOMEDEPOT} (see ../shared/data/SOURCES.md)")
    sys.path.insert(0, str(ROOT))
    work = work_arg.resolve()
    work.mkdir(parents=True, exist_ok=True)
    return (lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)), work


def write_train_titles(titles: dict, n: int, work: Path) -> tuple[Path, int, int]:
    """WORK/train_titles.txt: a seeded sample of ``n`` unique product titles (the catalogue's own
    text, no labels); returns (path, titles written, unique titles)."""
    unique = sorted(set(titles.values()))
    train = [unique[i] for i in np.random.default_rng(1).permutation(len(unique))[:n]]
    path = work / "train_titles.txt"
    path.write_text("\n".join(t.replace("\n", " ") for t in train) + "\n", encoding="utf-8")
    return path, len(train), len(unique)


def score(query_emb, pool_emb, queries, relevant, pool, k: int = 10) -> dict:
    """Recall@k / NDCG@k as `edgeopt distill --judgments` computes them (edgeopt/distill/search.py)."""
    from edgeopt.distill.search import scores

    at = {p: i for i, p in enumerate(pool)}
    return scores(query_emb, pool_emb, [{at[p] for p in relevant[q] if p in at} for q in queries], k)


def st_encoder(folder):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return lambda texts: st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)


def onnx_encoder(export_dir: Path, artifact: str):
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.text import TextEncoder

    manifest = json.loads((export_dir / "manifest.json").read_text())
    tok = TextEncoder(export_dir / "tokenizer", max_length=manifest["preprocessing"]["max_length"])
    session = get_runtime("onnxruntime").load(str(export_dir / artifact))
    names = [i["name"] for i in manifest["inputs"]]

    def encode(texts):  # one text per call, as a store serves a query (and as the INT8 gate scored it)
        out = []
        for t in texts:
            feeds = {k: v for k, v in tok([t]).items() if k in names}
            out.append(session.run(feeds)["sentence_embedding"][0])
        e = np.array(out)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    return encode


def evaluate(name, encode, queries, relevant, pool, titles, log, cache: Path | None = None) -> dict:
    """Score one model; with ``cache`` (WORK/rows) a model scored by an earlier run of the same
    setup is read back instead of encoding the pool again (a rerun only adds what is missing)."""
    stem = name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    path = cache / f"{stem}.json" if cache else None
    if path is not None and path.is_file():
        row = json.loads(path.read_text())
        log(f"{name}: Recall@10 {row['recall@10']:.4f}  NDCG@10 {row['ndcg@10']:.4f} (from {path})")
        return row
    t0 = time.perf_counter()
    pool_emb = encode([titles[p] for p in pool])
    query_emb = encode(queries)
    row = {"model": name, **score(query_emb, pool_emb, queries, relevant, pool),
           "encode_seconds": round(time.perf_counter() - t0, 1)}
    log(f"{name}: Recall@10 {row['recall@10']:.4f}  NDCG@10 {row['ndcg@10']:.4f}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row) + "\n")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-titles", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--layers", default="2,3,4")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--int8", action="store_true", help="also export the 3-layer student with --int8 and score it")
    ap.add_argument("--no-untrained", action="store_true", help="skip the untrained layer-dropped baselines")
    ap.add_argument("--work", type=Path, default=Path("distill-minilm-work"))
    ap.add_argument("--json", type=Path, help="write the results here (default: WORK/results.json)")
    ap.add_argument("--rounds", type=int, default=0, help="with --int8: interleaved latency rounds (0: none)")
    ap.add_argument("--prune-ffn", type=float, default=0.0, metavar="R",
                    help="then prune R of the 3-layer student's FFN neurons; --int8 exports that")
    ap.add_argument("--prune-epochs", type=int, default=1, help="recovery epochs of --prune-ffn (distillation from "
                    "the unpruned student on the training titles)")
    args = ap.parse_args()
    log, work = start(args.work)
    from edgeopt.models.embedded import embedded_model_path
    from edgeopt.distill import distill
    from edgeopt.distill.students import save_layer_dropped
    from edgeopt.models import load_model

    rows = work / "rows"
    teacher = embedded_model_path()
    titles, judged = read_homedepot()
    queries, relevant, pool = search_setup(titles, judged, args.queries, args.pool)
    train_file, n_train, n_unique = write_train_titles(titles, args.train_titles, work)
    log(f"{len(queries)} queries ({sum(map(len, relevant.values()))} relevant judgments), pool {len(pool)}, "
        f"training on {n_train} of {n_unique} unique titles, {args.epochs} epoch(s)")
    results = {"setup": {"queries": len(queries), "pool": len(pool), "train_titles": n_train,
                         "unique_titles": n_unique, "epochs": args.epochs, "batch_size": args.batch_size,
                         "lr": args.lr, "relevant_if": f"relevance >= {RELEVANT}", "loss": "mse"},
               "rows": []}
    results["rows"].append(evaluate("teacher (6 layers)", st_encoder(teacher), queries, relevant, pool, titles, log,
                                    rows))
    layers = [int(x) for x in args.layers.split(",")]
    teacher_model = load_model(teacher)
    for n in layers:
        if not args.no_untrained:
            folder = work / f"untrained-{n}"
            if not folder.exists():
                save_layer_dropped(teacher_model, n, folder)
            results["rows"].append(evaluate(f"{n} layers, untrained", st_encoder(folder), queries, relevant, pool,
                                            titles, log, rows))
        out = work / f"student-{n}"
        t0 = time.perf_counter()
        if (out / "report.json").is_file():  # distilled by an earlier run of this setup
            log(f"reusing {out}")
            report = json.loads((out / "report.json").read_text())
        else:
            report = distill(teacher=teacher, data=train_file, out=out, student_layers=n, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, latency=False, cache_dir=work / "cache",
                             log=log).report.to_json()
        minutes = (time.perf_counter() - t0) / 60
        row = evaluate(f"{n} layers, distilled", st_encoder(out), queries, relevant, pool, titles, log, rows)
        row.update(distill_minutes=round(minutes, 1), train_seconds=report["training"]["seconds"],
                   heldout_cosine=report["quality"]["student"]["cosine_mean"])
        results["rows"].append(row)
    student, label = work / "student-3", "3 layers, distilled"
    if args.prune_ffn and 3 in layers:  # the chain distill -> prune: half-width FFNs cost less per layer
        from prune_minilm import edgeopt_encoder

        from edgeopt.prune import prune

        student = work / f"student-3-ffn{round(args.prune_ffn * 100)}"
        label = f"{label}, {args.prune_ffn:.0%} FFN pruned"
        if not (student / "report.json").is_file():
            log(f"edgeopt prune student-3 --structured --ratio {args.prune_ffn} --head-ratio 0 "
                f"--recover-epochs {args.prune_epochs}")
            prune(model=work / "student-3", out=student, ratio=args.prune_ffn, head_ratio=0.0, structured=True,
                  data=train_file, recover_epochs=args.prune_epochs, batch_size=args.batch_size, speed_check=False,
                  log=log)
        results["rows"].append(evaluate(label, edgeopt_encoder(student), queries, relevant, pool, titles, log, rows))
    if args.int8 and 3 in layers:
        export = work / f"{student.name}-export"
        log(f"edgeopt export {student.name} --int8 --to onnx")
        cmd = [str(Path(sys.executable).parent / "edgeopt"), "export", str(student), "--int8", "--to",
               "onnx", "--reference", str(teacher), "-o", str(export), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True) if not (export / "manifest.json").is_file() else None
        if proc is None:  # exported by an earlier run
            proc = subprocess.CompletedProcess(cmd, 0, (export / "manifest.json").read_text(), "")
        results["int8_export"] = {"command": " ".join(cmd[1:]), "exit_code": proc.returncode}
        if proc.returncode == 0:
            manifest = json.loads(proc.stdout)
            int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
            results["int8_export"]["artifact"] = int8["path"]
            results["int8_export"]["gate"] = int8.get("quality")
            encoder = onnx_encoder(export, int8["path"])
            results["rows"].append(evaluate(f"{label}, INT8 (onnxruntime)", encoder,
                                            queries, relevant, pool, titles, log, rows))
            if args.rounds:
                results["latency"] = latency(teacher, export, int8["path"], work, args.rounds, log)
        else:
            results["int8_export"]["stderr"] = proc.stderr[-2000:]
    path = write_results(results, args.json or work / "results.json")
    print(f"results: {path}")


def latency(teacher: Path, export: Path, int8_path: str, work: Path, rounds: int, log) -> dict:
    """The 3-layer student (FP32, edgeopt INT8) against the teacher (FP32, stock quantize_dynamic)."""
    from onnxruntime.quantization import quantize_dynamic

    from int8_minilm import side_by_side

    teacher_export = work / "teacher-export"
    if not (teacher_export / "model.onnx").is_file():
        subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", str(teacher), "--to", "onnx", "-o",
                        str(teacher_export)], check=True, capture_output=True)
    stock = work / "teacher-stock-dynamic.onnx"
    if not stock.is_file():
        quantize_dynamic(str(teacher_export / "model.onnx"), str(stock))
    name = export.name.removesuffix("-export")
    student_stock = work / f"{name}-stock-dynamic.onnx"  # what the same student costs with the stock recipe
    if not student_stock.is_file():
        quantize_dynamic(str(export / "model.onnx"), str(student_stock))
    cands = {"ORT FP32": ("onnxruntime", str(teacher_export / "model.onnx"), "fp32"),
             "stock ORT quantize_dynamic (teacher)": ("onnxruntime", str(stock), "int8"),
             f"ORT FP32 {name}": ("onnxruntime", str(export / "model.onnx"), "fp32"),
             f"edgeopt INT8 {name} (ORT)": ("onnxruntime", str(export / int8_path), "int8"),
             f"quantize_dynamic {name} (ORT, ungated)": ("onnxruntime", str(student_stock), "int8")}
    env = {**os.environ, "EDGEOPT_BENCH_OUT": str(export)}  # the student's tokenizer is the teacher's
    script = str(ROOT / "benchmarks" / "int8_minilm.py")
    out = {}
    for workload in ("64", "titles"):
        log(f"latency, workload {workload}: {rounds} interleaved rounds")
        out[workload] = side_by_side(cands, script, rounds, env, {}, workload=workload)
        for row in out[workload]:
            log(f"  {row['candidate']:40s} p50 {row['p50_ms']:.2f} ms  {row['vs_best_stock_int8']:.3f}x stock INT8 "
                f"of the teacher")
    return out


def write_results(results: dict, path: Path, width: int = 42) -> Path:
    """Each row's share of the first row's (the unchanged model's) Recall@10, the JSON, a table."""
    base = results["rows"][0]["recall@10"]
    for row in results["rows"]:
        row["recall_kept"] = row["recall@10"] / base
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'model':{width}s} {'Recall@10':>9s} {'NDCG@10':>8s} {'kept':>6s}")
    for row in results["rows"]:
        print(f"{row['model']:{width}s} {row['recall@10']:9.4f} {row['ndcg@10']:8.4f} {row['recall_kept']:6.1%}")
    return path


if __name__ == "__main__":
    main()

"""Write the data examples/search.yaml reads, from Home Depot's judged search pairs.

    python examples/homedepot_data.py [--data ../shared/data] [--train 20000] [--queries 1000] [--pool 20000]

Reads DATA/homedepot/train.csv.zip (74,067 judged query-product pairs, relevance 1-3) and writes
examples/homedepot/:
- train_titles.txt: --train unique product titles, a seeded sample of the catalogue (the student
  learns the teacher's embedding of the catalogue's own text; no labels);
- judgments.csv: query,document,relevance for --queries seeded queries that have a product judged
  relevant (relevance >= 2.5 -> 1, else 0); those queries are never trained on;
- pool_titles.txt: other catalogue titles that fill the search pool up to --pool products;
- release.key / release.pub: a signing key pair for the package step (edgeopt keygen).
The same protocol as benchmarks/distill_minilm.py, whose numbers docs/PERFORMANCE.md records.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RELEVANT = 2.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "homedepot")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=20000)
    args = ap.parse_args()
    source = args.data / "homedepot" / "train.csv.zip"
    if not source.is_file():
        sys.exit(f"error: {source} not found; pass --data (the folder holding homedepot/train.csv.zip)")
    with zipfile.ZipFile(source) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open("train.csv"), encoding="latin-1")))
    titles: dict[str, str] = {}
    judged: dict[str, dict[str, float]] = {}
    for r in rows:
        titles[r["product_uid"]] = " ".join(r["product_title"].split())
        judged.setdefault(r["search_term"].strip(), {})[r["product_uid"]] = float(r["relevance"])

    rng = np.random.default_rng(0)
    candidates = sorted(q for q, j in judged.items() if any(v >= RELEVANT for v in j.values()))
    queries = [candidates[i] for i in rng.permutation(len(candidates))[:args.queries]]
    judged_ids = sorted({p for q in queries for p in judged[q]})
    others = sorted(set(titles) - set(judged_ids))
    fill = [others[i] for i in rng.permutation(len(others))[:max(0, args.pool - len(judged_ids))]]
    unique = sorted(set(titles.values()))
    train = [unique[i] for i in np.random.default_rng(1).permutation(len(unique))[:args.train]]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_titles.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (args.out / "pool_titles.txt").write_text("\n".join(titles[p] for p in fill) + "\n", encoding="utf-8")
    with open(args.out / "judgments.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "document", "relevance"])
        for q in queries:
            for p, v in sorted(judged[q].items()):
                w.writerow([q, titles[p], 1 if v >= RELEVANT else 0])
    if not (args.out / "release.key").is_file():
        subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "keygen", "-o", str(args.out / "release")],
                       check=True, capture_output=True)
    print(f"{args.out}: {len(train)} training titles, {len(queries)} queries judging {len(judged_ids)} products, "
          f"{len(fill)} pool titles")


if __name__ == "__main__":
    main()

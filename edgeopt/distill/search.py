"""``--judgments``: an embedder scored as a store search, teacher against student.

Judgments are a CSV with a ``query`` and a ``document`` column (the product's title) and an
optional ``relevance`` column. A pair is relevant when its relevance is at least ``min_relevance``
(default: any positive value; without the column every pair is). Each query with a relevant
document is searched against a pool of every judged document plus the held-out evaluation texts
(distractors, as the rest of a catalogue would be); Recall@10 and NDCG@10 with binary gains.
Re-ranking only a query's few judged documents hardly tells models apart; a pool does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError

K = 10


@dataclass
class Judgments:
    source: str
    queries: list[str]
    documents: list[str]  # the pool's judged part
    relevant: list[set[int]]  # per query: indices into documents


def read_judgments(path: str | Path, min_relevance: float | None = None) -> Judgments:
    """Queries with at least one relevant document; UsageError when the file cannot be used."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--judgments {path}: no such file; give a CSV with query,document[,relevance] columns")
    try:
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
    except (csv.Error, OSError) as e:
        raise UsageError(f"--judgments {path}: not a readable CSV ({e})") from None
    if not rows or not {"query", "document"} <= set(rows[0]):
        raise UsageError(f"--judgments {path}: needs a header with 'query' and 'document' columns "
                         "(and optionally 'relevance')")
    docs: dict[str, int] = {}
    by_query: dict[str, set[int]] = {}
    for i, r in enumerate(rows, start=2):
        q, d = (r.get("query") or "").strip(), (r.get("document") or "").strip()
        if not q or not d:
            continue
        idx = docs.setdefault(d, len(docs))
        try:
            rel = float(r["relevance"]) if r.get("relevance") not in (None, "") else 1.0
        except ValueError:
            raise UsageError(f"--judgments {path}: line {i}: relevance {r['relevance']!r} is not a number") from None
        by_query.setdefault(q, set())
        if (rel >= min_relevance) if min_relevance is not None else rel > 0:
            by_query[q].add(idx)
    queries = sorted(q for q, rel in by_query.items() if rel)
    if not queries:
        raise UsageError(f"--judgments {path}: no query has a relevant document"
                         + (f" (relevance >= {min_relevance})" if min_relevance is not None else ""))
    return Judgments(str(path), queries, list(docs), [by_query[q] for q in queries])


def scores(query_emb: np.ndarray, pool_emb: np.ndarray, relevant: list[set[int]], k: int = K) -> dict:
    """Recall@k and NDCG@k (binary gains) of each query's nearest pool entries by cosine."""
    q = query_emb / np.maximum(np.linalg.norm(query_emb, axis=1, keepdims=True), 1e-12)
    d = pool_emb / np.maximum(np.linalg.norm(pool_emb, axis=1, keepdims=True), 1e-12)
    top = np.argsort(-(q @ d.T), axis=1)[:, :k]
    discounts = 1 / np.log2(np.arange(2, k + 2))
    recall, ndcg = [], []
    for qi, rel in enumerate(relevant):
        hits = np.array([j in rel for j in top[qi]], dtype=float)
        recall.append(hits.sum() / len(rel))
        ndcg.append((hits * discounts).sum() / discounts[:min(k, len(rel))].sum())
    return {f"recall@{k}": float(np.mean(recall)), f"ndcg@{k}": float(np.mean(ndcg))}


def search_quality(judgments: Judgments, distractors: list[str], encoders: dict) -> dict:
    """``encoders``: name -> (texts -> embeddings). The pool is the judged documents, then the
    distractors not among them."""
    seen = set(judgments.documents)
    pool = judgments.documents + [t for t in dict.fromkeys(distractors) if t not in seen]
    result = {"judgments": judgments.source, "queries": len(judgments.queries), "pool": len(pool), "k": K}
    for name, encode in encoders.items():
        result[name] = scores(encode(judgments.queries), encode(pool), judgments.relevant)
    return result

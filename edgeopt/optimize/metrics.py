"""Quality metrics of a candidate model against the FP32 reference (DESIGN.md: Metrics).

Each metric returns a ``Quality``: the candidate's value, the reference's value, and the *drop*
the gate compares with ``--max-drop`` (in the metric's own units: top1 0.005 = 0.5 points).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgeopt.errors import UsageError

METRICS = ("cosine", "nn", "top1", "mse", "ndcg@k", "recall@k")
DEFAULT_MAX_DROP = {"cosine": 0.005, "nn": 0.03, "top1": 0.005, "mse": 1e-3, "ndcg": 0.01, "recall": 0.01}


@dataclass
class Quality:
    metric: str
    value: float
    reference: float
    drop: float
    details: dict
    vs: str = "fp32 source"  # what ``reference`` was measured against (the gate's reference model)

    def to_json(self) -> dict:
        return {"metric": self.metric, "value": self.value, "reference": self.reference, "drop": self.drop,
                **self.details, "vs": self.vs}


def parse_metric(text: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"(cosine|nn|top1|mse)|(ndcg|recall)@(\d+)", text.strip().lower())
    if not m:
        raise UsageError(f"unknown --metric {text!r}; choose cosine, nn, top1, mse, ndcg@K or recall@K")
    return (m[1], None) if m[1] else (m[2], int(m[3]))


def default_max_drop(metric: str) -> float:
    return DEFAULT_MAX_DROP[parse_metric(metric)[0]]


def check_max_drop(metric: str, max_drop: float) -> None:
    name, _ = parse_metric(metric)
    upper = None if name == "mse" else 1.0
    if max_drop < 0 or (upper is not None and max_drop >= upper):
        raise UsageError(f"--max-drop {max_drop} is out of range for {metric}: use 0 <= X < 1 "
                         "(fractions: 0.005 = 0.5 points)" if upper else f"--max-drop must be >= 0 for {metric}")


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).astype(np.float64)


def cosines(ref: np.ndarray, out: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Cosine per sample (row) of ``out`` to ``ref``, each flattened; 1 where both rows are within
    ``floor`` of zero (the same output; a direction there is noise that an absolute tolerance
    already bounds), a 0-d array counting as one sample."""
    ref, out = np.asarray(ref), np.asarray(out)
    a = _rows(ref) if ref.ndim else ref.reshape(1, 1).astype(np.float64)
    b = out.reshape(a.shape).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where((na <= floor) & (nb <= floor), 1.0, cos)


def nearest_neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    e = _rows(emb)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def neighbour_agreement(ref: np.ndarray, out: np.ndarray, tie: float = 0.0) -> float:
    """Share of samples whose nearest other sample is the same under both embeddings.

    With ``tie`` > 0, a different neighbour still agrees when its reference similarity is within
    ``tie`` of the reference's best: product titles have near-duplicates whose order is noise.
    """
    if len(ref) < 3:
        return 1.0
    nn_ref, nn_out = nearest_neighbours(ref, 1)[:, 0], nearest_neighbours(out, 1)[:, 0]
    if tie <= 0:
        return float((nn_ref == nn_out).mean())
    e = _rows(ref)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    idx = np.arange(len(e))
    best = (e[idx] * e[nn_ref]).sum(1)
    chosen = (e[idx] * e[nn_out]).sum(1)
    return float((chosen >= best - tie).mean())


def _retrieval(emb: np.ndarray, labels: np.ndarray, k: int, kind: str) -> float:
    nn = nearest_neighbours(emb, k)
    rel = (labels[nn] == labels[:, None]).astype(np.float64)
    if kind == "recall":
        return float(rel.max(axis=1).mean())
    discounts = 1 / np.log2(np.arange(2, k + 2))
    dcg = (rel * discounts).sum(1)
    n_rel = np.minimum((labels[:, None] == labels[None, :]).sum(1) - 1, k)
    idcg = np.array([discounts[:n].sum() for n in n_rel])
    return float(np.where(idcg > 0, dcg / np.maximum(idcg, 1e-30), 0.0).mean())


def evaluate(metric: str, ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None = None) -> Quality:
    """Compare candidate outputs ``out`` with the reference ``ref`` (same samples, same order)."""
    name, k = parse_metric(metric)
    if name == "cosine":
        cos = cosines(ref, out)
        return Quality("cosine", float(cos.mean()), 1.0, float(1 - cos.mean()),
                       {"mean": float(cos.mean()), "min": float(cos.min()),
                        "nn_agreement": neighbour_agreement(ref, out),
                        "nn_agreement_tie_0.01": neighbour_agreement(ref, out, tie=0.01)})
    if name == "nn":  # retrieval stability: does each sample keep its nearest neighbour?
        agreement = neighbour_agreement(ref, out)
        cos = cosines(ref, out)
        return Quality("nn", agreement, 1.0, 1 - agreement,
                       {"nn_agreement": agreement, "nn_agreement_tie_0.01": neighbour_agreement(ref, out, tie=0.01),
                        "mean": float(cos.mean()), "min": float(cos.min()), "samples": len(ref)})
    if name == "mse":
        mse = float(((_rows(ref) - _rows(out)) ** 2).mean())
        return Quality("mse", mse, 0.0, mse, {})
    if name == "top1":
        pred_ref, pred = _rows(ref).argmax(1), _rows(out).argmax(1)
        agreement = float((pred_ref == pred).mean())
        if labels is None:  # no labels: agreement with the FP32 model's decisions
            return Quality("top1", agreement, 1.0, 1 - agreement, {"labels": False})
        acc_ref, acc = float((pred_ref == labels).mean()), float((pred == labels).mean())
        return Quality("top1", acc, acc_ref, acc_ref - acc, {"labels": True, "agreement": agreement})
    if labels is None:
        raise UsageError(f"--metric {metric} needs labelled --eval data (a 'labels' array or label column)")
    ref_v, v = _retrieval(ref, labels, k, name), _retrieval(out, labels, k, name)
    return Quality(f"{name}@{k}", v, ref_v, ref_v - v, {})


def default_metric(task: str | None, output_shape) -> str:
    """cosine for embedders, top1 for classifiers (a class axis), mse otherwise."""
    if task == "embed":
        return "cosine"
    if task in ("classify", "binary"):
        return "top1"
    if task == "regress":
        return "mse"
    if len(output_shape) == 2 and isinstance(output_shape[1], int) and output_shape[1] > 1:
        return "cosine"
    return "mse"

"""Quality metrics of a candidate model against the FP32 reference (DESIGN.md: Metrics).

Each metric returns a ``Quality``: the candidate's value, the reference's value, and the *drop*
the gate compares with ``--max-drop`` (in the metric's own units: top1 0.005 = 0.5 points).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgeopt.errors import UsageError

METRICS = ("cosine", "nn", "top1", "mse", "auc", "logloss", "ndcg@k", "recall@k")
DEFAULT_MAX_DROP = {"cosine": 0.005, "nn": 0.03, "top1": 0.005, "mse": 1e-3, "auc": 0.003, "logloss": 0.005,
                    "ndcg": 0.01, "recall": 0.01}


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
    m = re.fullmatch(r"(cosine|nn|top1|mse|auc|logloss)|(ndcg|recall)@(\d+)", text.strip().lower())
    if not m:
        raise UsageError(f"unknown --metric {text!r}; choose cosine, nn, top1, mse, auc, logloss, ndcg@K or recall@K")
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
    if name in ("auc", "logloss"):
        return _click_metric(name, ref, out, labels)
    if name == "top1":
        if _rows(ref).shape[1] == 1:
            raise UsageError("--metric top1 on a one-column output: argmax over one column is always 0; "
                             "use --metric auc or logloss (click models, 0/1 labels)")
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


def binary_labels(labels: np.ndarray | None) -> bool:
    """Labels of a click model: 0/1 values, both present."""
    return labels is not None and labels.size > 0 and set(np.unique(labels).tolist()) == {0, 1}


def click_probabilities(scores: np.ndarray) -> np.ndarray:
    """One score per row as a click probability: kept when every score is in [0, 1] (a model that
    ends in a sigmoid, as torch-rechub's and DeepCTR's do), else read as logits."""
    s = _rows(scores)[:, 0]
    return s if s.size and s.min() >= 0 and s.max() <= 1 else 1 / (1 + np.exp(-s))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based, ties share their mean rank
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _click_metric(name: str, ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None) -> Quality:
    """AUC (higher is better) or log loss (lower is better) of one click score per row against 0/1
    labels; the drop is how much worse the candidate is than the reference."""
    if _rows(ref).shape[1] != 1:
        raise UsageError(f"--metric {name} needs one score per row (a click model); this output has "
                         f"{_rows(ref).shape[1]} columns")
    if not binary_labels(labels):
        raise UsageError(f"--metric {name} needs 0/1 labels in the evaluation data, both clicks and non-clicks")
    p_ref, p = click_probabilities(ref), click_probabilities(out)
    if name == "auc":
        v_ref, v = roc_auc(labels, p_ref), roc_auc(labels, p)
        return Quality("auc", v, v_ref, v_ref - v, {"labels": True, "samples": len(p)})
    v_ref, v = log_loss(labels, p_ref), log_loss(labels, p)
    return Quality("logloss", v, v_ref, v - v_ref, {"labels": True, "samples": len(p)})


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

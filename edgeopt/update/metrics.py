"""The metric an update is judged by, on held-out old and new data (higher is better except mse).

Classifiers and next-item recommenders (one output column per class / item): ``top1``,
``recall@K`` (the label among the K highest scores) and ``mrr@K`` (1 / its rank there, else 0).
A label beyond the model's columns (an item the model has never seen) counts as a miss, so the
model before an update that adds items is scored honestly. binary: ``auc`` (the default: what CTR
teams measure, and blind to whether the model outputs logits or probabilities), ``logloss`` or
``accuracy`` (thresholded at 0 for logits, 0.5 for probabilities: ``output_kind``); regress: ``mse``.
"""

from __future__ import annotations

import re

import numpy as np

from edgeopt.errors import UsageError


def parse(metric: str, task: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"(top1|accuracy|auc|logloss|mse)|(recall|mrr)@(\d+)", metric.strip().lower())
    if not m or (m[3] is not None and int(m[3]) < 1):
        raise UsageError(f"unknown --metric {metric!r}; choose top1, recall@K, mrr@K (classify), "
                         "auc, logloss, accuracy (binary) or mse (regress)")
    name, k = (m[1], None) if m[1] else (m[2], int(m[3]))
    allowed = {"classify": ("top1", "recall", "mrr"), "binary": ("auc", "logloss", "accuracy"),
               "regress": ("mse",)}[task]
    if name not in allowed:
        raise UsageError(f"--metric {metric} does not fit a {task} model; choose {', '.join(allowed)}")
    return name, k


def default(task: str, width) -> str:
    if task == "binary":
        return "auc"
    if task == "regress":
        return "mse"
    return "recall@20" if isinstance(width, int) and width > 100 else "top1"


def higher_is_better(metric: str) -> bool:
    return not metric.startswith(("mse", "logloss"))


OUTPUT_KINDS = ("logits", "probs")


def detect_output_kind(out: np.ndarray) -> str:
    """'probs' when every score of a one-column model lies in [0, 1] (it ends in a sigmoid, as
    torch-rechub's and DeepCTR's rankers do), else 'logits'."""
    return "probs" if out.size and float(out.min()) >= 0 and float(out.max()) <= 1 else "logits"


def ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-based rank of each label among its row's scores (ties count against it); inf when absent."""
    labels = labels.reshape(-1).astype(np.int64)
    inside = (labels >= 0) & (labels < scores.shape[1])
    r = np.full(len(labels), np.inf)
    own = scores[np.arange(len(labels))[inside], labels[inside]]
    r[inside] = (scores[inside] >= own[:, None]).sum(1)
    return r


def value(metric: str, task: str, out: np.ndarray, labels: np.ndarray, output_kind: str = "logits") -> float:
    from edgeopt.optimize.metrics import log_loss, roc_auc

    name, k = parse(metric, task)
    if name == "mse":
        return float(((out.reshape(-1) - labels.reshape(-1)) ** 2).mean())
    if name == "accuracy":
        threshold = 0.5 if output_kind == "probs" else 0.0
        return float(((out.reshape(-1) > threshold) == (labels.reshape(-1) > 0.5)).mean())
    if name in ("auc", "logloss"):
        y = labels.reshape(-1) > 0.5
        if name == "auc":
            return roc_auc(y, out.reshape(-1)) if 0 < y.sum() < len(y) else 0.5
        p = out.reshape(-1).astype(np.float64)
        return log_loss(y, p if output_kind == "probs" else 1 / (1 + np.exp(-p)))
    r = ranks(out, labels)
    if name == "top1":
        return float((r <= 1).mean())
    if name == "recall":
        return float((r <= k).mean())
    return float(np.where(r <= k, 1.0 / r, 0.0).mean())


def all_values(metric: str, task: str, out: np.ndarray, labels: np.ndarray,
               output_kind: str = "logits") -> dict[str, float]:
    """The gate metric plus its usual companions (top1 / recall@K / mrr@K for classifiers, auc /
    logloss / accuracy for click models)."""
    names = [metric]
    if task == "classify":
        k = parse(metric, task)[1] or 20
        names += [m for m in ("top1", f"recall@{k}", f"mrr@{k}") if m not in names]
    if task == "binary":
        names += [m for m in ("auc", "logloss", "accuracy") if m not in names]
    return {m: value(m, task, out, labels, output_kind) for m in names}


def drop(metric: str, before: float, after: float) -> float:
    """How much worse ``after`` is, in the metric's units (positive: it forgot)."""
    return (before - after) if higher_is_better(metric) else (after - before)

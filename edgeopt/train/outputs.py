"""A model's outputs on a whole dataset, and how two sets of outputs compare: what distill, prune
(before / after, recovery) and update (metrics, teacher targets) measure with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.train.report import Report, omitted


def lengths(ds) -> np.ndarray | None:
    """Token counts of a text dataset (for batches of similar length); None for other data."""
    return np.array([s["input_ids"].shape[-1] for s in ds.samples]) if ds.kind == "text" else None


def outputs(module, ds, names: list[str], *, batch: int = 64, by_length: bool = True) -> np.ndarray:
    """The module's (pooled) outputs on every sample of ds, in sample order. Text runs in batches
    of similar length (less padding) unless ``by_length`` is False."""
    import torch

    from edgeopt.train.batches import collate, forward

    sizes = lengths(ds) if by_length else None
    order = np.arange(len(ds)) if sizes is None else np.argsort(sizes, kind="stable")
    out = None
    with torch.inference_mode():
        for start in range(0, len(ds), batch):
            idx = order[start:start + batch]
            y = forward(module, collate(ds, idx), names).float().numpy()
            out = np.empty((len(ds), *y.shape[1:]), dtype=y.dtype) if out is None else out
            out[idx] = y
    return out


def column_outputs(module, ds, names: list[str]) -> np.ndarray:
    """``outputs`` as rows x columns, in dataset order, batches of 256: a [batch] output (a click
    probability) becomes one column, so column slices keep their rows (update's metrics)."""
    out = outputs(module, ds, names, batch=256, by_length=False)
    return out.reshape(len(out), 1) if out.ndim == 1 else out


@dataclass(frozen=True)
class Comparison(Report):
    """Teacher (reference) against student on held-out data, in the task's own metric."""
    samples: int
    student: dict
    untrained_student: dict | None = omitted()  # a layer-dropped student before training
    teacher: dict | None = omitted()  # the reference's own metric on the labels
    search: dict | None = omitted()  # distill --judgments: both as a store search


def _metrics(task: str, reference: np.ndarray, out: np.ndarray, labels: np.ndarray | None) -> dict:
    from edgeopt.optimize.metrics import cosines, neighbour_agreement

    if task == "embed":
        cos = cosines(reference, out)
        return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                "nn_agreement": neighbour_agreement(reference, out),
                "nn_agreement_tie_0.01": neighbour_agreement(reference, out, tie=0.01)}
    if task == "classify":
        row = {"agreement": float((out.argmax(1) == reference.argmax(1)).mean())}
        if labels is not None:
            row["top1"] = float((out.argmax(1) == labels).mean())
        return row
    if task == "binary":
        row = {"agreement": float(((out.reshape(-1) > 0) == (reference.reshape(-1) > 0)).mean())}
        if labels is not None:
            row["accuracy"] = float(((out.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).mean())
        return row
    row = {"mse_to_teacher": float(((out - reference) ** 2).mean())}
    if labels is not None:
        row["mse"] = float(((out.reshape(-1) - labels.reshape(-1)) ** 2).mean())
    return row


def compare(task: str, teacher: np.ndarray, student: np.ndarray, labels: np.ndarray | None,
            untrained: np.ndarray | None = None) -> Comparison:
    """Teacher vs student on held-out data (and the untrained student's, for layer-dropped
    students: what distillation bought)."""
    reference = None
    if labels is not None and task == "classify":
        reference = {"top1": float((teacher.argmax(1) == labels).mean())}
    elif labels is not None and task == "binary":
        reference = {"accuracy": float(((teacher.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).mean())}
    elif labels is not None and task == "regress":
        reference = {"mse": float(((teacher.reshape(-1) - labels.reshape(-1)) ** 2).mean())}
    return Comparison(samples=int(len(teacher)), student=_metrics(task, teacher, student, labels),
                      untrained_student=None if untrained is None else _metrics(task, teacher, untrained, labels),
                      teacher=reference)

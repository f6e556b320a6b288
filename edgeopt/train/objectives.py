"""What the student is trained to match, per task (DESIGN.md: Tasks).

embed: the teacher's pooled embedding (MSE or cosine); classify: the teacher's softened class
distribution (KL, scaled by T^2 so gradients keep their size across temperatures) mixed with the
hard labels when there are any (``alpha`` on the teacher); binary / regress: the same on logits."""

from __future__ import annotations

import numpy as np

from edgeopt.errors import UsageError

TASKS = ("embed", "classify", "binary", "regress")
EMBED_LOSSES = ("mse", "cosine")


def loss(task: str, student, teacher, labels=None, *, alpha: float = 0.5, temperature: float = 2.0,
         embed_loss: str = "mse"):
    import torch.nn.functional as F

    if task == "embed":
        if embed_loss == "cosine":
            return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
        return ((student - teacher) ** 2).sum(-1).mean()  # squared distance per sample
    t = temperature
    if task == "classify":
        soft = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean") * t * t
        hard = None if labels is None else F.cross_entropy(student, labels.long())
    elif task == "binary":
        s, te = student.reshape(-1), teacher.reshape(-1)
        soft = F.binary_cross_entropy_with_logits(s / t, (te / t).sigmoid()) * t * t
        hard = None if labels is None else F.binary_cross_entropy_with_logits(s, labels.float().reshape(-1))
    else:
        soft = F.mse_loss(student, teacher)
        hard = None if labels is None else F.mse_loss(student.reshape(labels.shape), labels.float())
    return soft if hard is None else alpha * soft + (1 - alpha) * hard


def score(task: str, student: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None) -> dict:
    """The per-epoch evaluation: ``score`` is what early stopping maximizes."""
    from edgeopt.optimize.metrics import cosines

    if task == "embed":
        cos = cosines(teacher, student)
        return {"score": float(cos.mean()), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if task == "classify":
        agree = float((student.argmax(1) == teacher.argmax(1)).mean())
        row = {"agreement": agree}
        if labels is not None:
            row["top1"] = float((student.argmax(1) == labels).mean())
        return {"score": row.get("top1", agree), **row}
    if task == "binary":
        s, te = student.reshape(-1) > 0, teacher.reshape(-1) > 0
        row = {"agreement": float((s == te).mean())}
        if labels is not None:
            row["accuracy"] = float((s == (labels.reshape(-1) > 0.5)).mean())
        return {"score": row.get("accuracy", row["agreement"]), **row}
    mse = float(((student - teacher) ** 2).mean())
    return {"score": -mse, "mse_to_teacher": mse}


def infer_task(task: str | None, teacher, labels_present: bool, labels: np.ndarray | None = None) -> str:
    """--task, else the model's own, else read from its outputs: several columns and labels are
    classify; one column and 0/1 ``labels`` are binary (a click / yes-no model)."""
    known = teacher.metadata.get("task")
    if task is not None:
        if task not in TASKS:
            raise UsageError(f"unknown --task {task!r}; choose {', '.join(TASKS)}")
        if known in TASKS and known != task:
            raise UsageError(f"--task {task} contradicts {teacher.name}, which is a {known} model; drop --task")
        shape = teacher.io.outputs[0].shape if teacher.io.outputs else ()
        if task == "classify" and not (len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1):
            raise UsageError(f"--task classify needs a teacher with one output column per class; "
                             f"{teacher.name} outputs {tuple(shape)}")
        return task
    if known in TASKS:
        return known
    shape = teacher.io.outputs[0].shape if teacher.io.outputs else ()
    width = shape[-1] if len(shape) >= 2 else 1
    if len(shape) == 2 and isinstance(width, int) and width > 1 and labels_present:
        return "classify"
    if len(shape) <= 2 and width == 1 and labels is not None and len(labels) and np.isin(labels, (0, 1)).all():
        return "binary"
    raise UsageError(f"cannot tell the task of {teacher.name} (output {tuple(shape)}"
                     f"{', data without labels' if not labels_present else ''}); pass --task "
                     f"{'|'.join(TASKS)}")

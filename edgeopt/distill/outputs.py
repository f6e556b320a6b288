"""What distill writes: the student in its teacher's family (a sentence-transformers or Hugging
Face folder stays one; any other model becomes OUT/model.pt2 + model.json) and the held-out
comparison of teacher and student for OUT/report.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.models.base import LoadedModel
from edgeopt.models.trainable import user_module


def save_student(student: LoadedModel, folder: Path, *, task: str, example: dict, class_names=None) -> None:
    """Write the trained student so that load_model (and so `edgeopt export`) reads it as the teacher's kind."""
    import torch

    from edgeopt.distill.batches import tensors
    from edgeopt.models.pt2_folder import write_pt2_folder

    if student.family == "sentence-transformers":
        user_module(student).save(str(folder))
        return
    if student.family == "hf":
        model = user_module(student)
        if class_names and getattr(model.config, "num_labels", None) == len(class_names):
            model.config.id2label = dict(enumerate(class_names))
            model.config.label2id = {c: i for i, c in enumerate(class_names)}
        model.save_pretrained(str(folder))
        student.tokenizer.save_pretrained(str(folder))
        return
    args = tuple(tensors(example, student.io.input_names))
    with torch.no_grad():
        write_pt2_folder(folder, student.module, args, student.io.inputs, task=task, class_names=class_names,
                         tokenizer=student.tokenizer, max_length=student.max_length,
                         max_batch=student.metadata.get("max_batch"))


def parameters(model: LoadedModel) -> int:
    return int(sum(p.numel() for p in model.module.parameters()))


def disk_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "report.json")


def compare(task: str, teacher: np.ndarray, student: np.ndarray, labels: np.ndarray | None,
            untrained: np.ndarray | None = None) -> dict:
    """Teacher vs student on held-out data in the task's own metric (and the untrained student's,
    for layer-dropped students: what distillation bought)."""
    from edgeopt.optimize.metrics import cosines, neighbour_agreement

    def one(out):
        if task == "embed":
            cos = cosines(teacher, out)
            return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                    "nn_agreement": neighbour_agreement(teacher, out),
                    "nn_agreement_tie_0.01": neighbour_agreement(teacher, out, tie=0.01)}
        if task == "classify":
            row = {"agreement": float((out.argmax(1) == teacher.argmax(1)).mean())}
            if labels is not None:
                row["top1"] = float((out.argmax(1) == labels).mean())
            return row
        if task == "binary":
            row = {"agreement": float(((out.reshape(-1) > 0) == (teacher.reshape(-1) > 0)).mean())}
            if labels is not None:
                row["accuracy"] = float(((out.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).mean())
            return row
        row = {"mse_to_teacher": float(((out - teacher) ** 2).mean())}
        if labels is not None:
            row["mse"] = float(((out.reshape(-1) - labels.reshape(-1)) ** 2).mean())
        return row

    result = {"samples": int(len(teacher)), "student": one(student)}
    if untrained is not None:
        result["untrained_student"] = one(untrained)
    if labels is not None and task == "classify":
        result["teacher"] = {"top1": float((teacher.argmax(1) == labels).mean())}
    elif labels is not None and task == "binary":
        result["teacher"] = {"accuracy": float(((teacher.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).mean())}
    elif labels is not None and task == "regress":
        result["teacher"] = {"mse": float(((teacher.reshape(-1) - labels.reshape(-1)) ** 2).mean())}
    return result


def table_rows(report: dict) -> list[tuple[str, str, str]]:
    """(quantity, teacher, student) rows for the CLI's table."""
    t, s = report["teacher"], report["student"]
    rows = [("parameters", f"{t['parameters'] / 1e6:.2f} M", f"{s['parameters'] / 1e6:.2f} M"),
            ("bytes", f"{t['bytes'] / 1e6:.1f} MB", f"{s['bytes'] / 1e6:.1f} MB")]
    if s.get("layers"):
        rows.append(("layers", str(t.get("layers", "-")), str(s["layers"])))
    q = report["quality"]
    for key, value in q["student"].items():
        tv = q.get("teacher", {}).get(key)
        ref = "1 (reference)" if key.startswith(("cosine", "nn_", "agreement")) else "-"
        rows.append((key, f"{tv:.4f}" if tv is not None else ref, f"{value:.4f}"))
    for key, value in (q.get("untrained_student") or {}).items():
        rows.append((f"{key} (untrained student)", "", f"{value:.4f}"))
    search = q.get("search")
    if search:
        for key in search["student"]:
            rows.append((f"search {key} ({search['queries']} queries, pool {search['pool']})",
                         f"{search['teacher'][key]:.4f}", f"{search['student'][key]:.4f}"))
    lat_t, lat_s = t.get("latency") or {}, s.get("latency") or {}
    if lat_t or lat_s:
        fmt = lambda d: f"{d['p50_ms']:.2f} ms" if "p50_ms" in d else d.get("error", "-")  # noqa: E731
        rows.append((f"p50 latency ({lat_t.get('runtime') or lat_s.get('runtime') or 'onnx'}, batch 1)",
                     fmt(lat_t), fmt(lat_s)))
    return rows

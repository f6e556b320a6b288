"""``DistillReport``: what distill measured, typed; ``to_json()`` is OUT/report.json."""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.train import TrainResult
from edgeopt.train.outputs import Comparison
from edgeopt.train.report import Report, omitted


@dataclass(frozen=True)
class TeacherSummary(Report):
    source: str
    family: str
    parameters: int
    bytes: int
    layers: int | None = omitted()  # layer-dropped students: the teacher's depth
    latency: dict | None = omitted()  # exported ONNX p50 / p90 at batch 1, or {"error": ...}


@dataclass(frozen=True)
class StudentSummary(Report):
    source: str  # the --student path, or "N of the teacher's layers"
    parameters: int
    layers: int | None = omitted()
    kept_layers: list[int] | None = omitted()
    bytes: int | None = omitted()  # of the written OUT
    latency: dict | None = omitted()  # as the teacher's, with "ratio" to it


@dataclass(frozen=True)
class DistillData(Report):
    train: str
    train_samples: int
    labels: bool
    eval: str
    eval_samples: int


@dataclass(frozen=True)
class DistillSettings(Report):
    epochs: int
    batch_size: int
    lr: float
    alpha: float
    temperature: float
    loss: str  # the embedding loss, or "kd"
    augment: bool
    seed: int


@dataclass(frozen=True)
class LatencyBudget(Report):
    budget: float
    teacher: dict
    candidates: list[dict]
    chosen_layers: int


@dataclass(frozen=True)
class DistillReport(Report):
    task: str
    teacher: TeacherSummary
    student: StudentSummary
    data: DistillData
    settings: DistillSettings
    training: TrainResult
    quality: Comparison
    latency_budget: LatencyBudget | None = omitted()

    def table_rows(self) -> list[tuple[str, str, str]]:
        """(quantity, teacher, student) rows for the CLI's table."""
        t, s, q = self.teacher, self.student, self.quality
        rows = [("parameters", f"{t.parameters / 1e6:.2f} M", f"{s.parameters / 1e6:.2f} M"),
                ("bytes", f"{t.bytes / 1e6:.1f} MB", f"{s.bytes / 1e6:.1f} MB")]
        if s.layers:
            rows.append(("layers", str(t.layers or "-"), str(s.layers)))
        for key, value in q.student.items():
            tv = (q.teacher or {}).get(key)
            ref = "1 (reference)" if key.startswith(("cosine", "nn_", "agreement")) else "-"
            rows.append((key, f"{tv:.4f}" if tv is not None else ref, f"{value:.4f}"))
        for key, value in (q.untrained_student or {}).items():
            rows.append((f"{key} (untrained student)", "", f"{value:.4f}"))
        if q.search:
            for key in q.search["student"]:
                rows.append((f"search {key} ({q.search['queries']} queries, pool {q.search['pool']})",
                             f"{q.search['teacher'][key]:.4f}", f"{q.search['student'][key]:.4f}"))
        lat_t, lat_s = t.latency or {}, s.latency or {}
        if lat_t or lat_s:
            fmt = lambda d: f"{d['p50_ms']:.2f} ms" if "p50_ms" in d else d.get("error", "-")  # noqa: E731
            rows.append((f"p50 latency ({lat_t.get('runtime') or lat_s.get('runtime') or 'onnx'}, batch 1)",
                         fmt(lat_t), fmt(lat_s)))
        return rows

"""``UpdateReport``: what update did and measured, typed; ``to_json()`` is OUT/report.json."""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.train import TrainResult
from edgeopt.train.report import Report


@dataclass(frozen=True)
class UpdatedModel(Report):
    source: str
    family: str
    grew: dict  # table -> {"from": rows, "to": rows}


@dataclass(frozen=True)
class UpdateData(Report):
    new: str
    new_train_samples: int
    new_eval_samples: int
    old: str | None
    old_train_samples: int
    old_eval_samples: int
    eval: str
    old_eval: str | None


@dataclass(frozen=True)
class Scores(Report):
    """Every metric of the task on the held-out old data (None without --old-data) and new data."""
    old: dict | None
    new: dict


@dataclass(frozen=True)
class Compute(Report):
    seconds: float
    train_samples_seen: int
    extra_forward_samples: int  # teacher outputs, Fisher samples, validation passes
    candidates: int


@dataclass(frozen=True)
class UpdateSettings(Report):
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    tune: bool
    seed: int
    replay_limit: int | None
    fisher_samples: int | None  # ewc only


@dataclass(frozen=True)
class Candidate(Report):
    """One method strength trained (--tune tries several), scored on the validation slices."""
    strength: float | None
    train_samples: int
    epochs_run: int
    best_epoch: int
    new_val: float | None
    old_val: float | None
    val_forgetting: float | None
    within_max_forgetting: bool
    seconds: float


@dataclass(frozen=True)
class UpdateReport(Report):
    method: str
    task: str
    metric: str
    strength: float | None
    output_kind: str | None
    model: UpdatedModel
    data: UpdateData
    before: Scores
    after: Scores
    forgetting: float | None
    new_gain: float
    max_forgetting: float | None
    passed: bool
    compute: Compute
    settings: UpdateSettings
    training: TrainResult
    tried: list[Candidate]
    compact_delta: dict | None  # --compact-delta: what keeping the low 16 bits moved

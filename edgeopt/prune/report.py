"""``PruneReport``: what prune did and measured, typed; ``to_json()`` is OUT/report.json."""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.train import TrainResult
from edgeopt.train.report import Report, omitted


@dataclass(frozen=True)
class PrunedModel(Report):
    source: str
    family: str
    task: str | None


@dataclass(frozen=True)
class Counts(Report):
    unpruned: int
    pruned: int


@dataclass(frozen=True)
class Macs(Report):
    unpruned: int
    pruned: int
    input: list[list[int]]  # the shapes counted on


@dataclass(frozen=True)
class PruneData(Report):
    train: str | None
    eval: str | None
    train_samples: int
    eval_samples: int


@dataclass(frozen=True)
class RuntimeLatency(Report):
    unpruned: dict  # p50 / p90 ms of the exported model, or {"error": ...}
    pruned: dict
    ratio: float | None
    search: list[dict] | None = omitted()  # --target-speedup: every ratio timed


@dataclass(frozen=True)
class Gate(Report):
    applies: bool  # structured prunes only: unstructured sparsity buys no speed
    passed: bool
    ratio: float | None
    limit: float
    reason: str


@dataclass(frozen=True)
class Recovery(Report):
    lr: float
    batch_size: int
    score_before: float
    training: TrainResult
    kept: str | None = None  # set when no recovery epoch beat the pruned weights, which were kept

    def to_json(self) -> dict:  # the training record inline, as report.json has always had it
        row = {"lr": self.lr, "batch_size": self.batch_size, "score_before": self.score_before,
               **self.training.to_json()}
        return row if self.kept is None else {**row, "kept": self.kept}


@dataclass(frozen=True)
class PruneQuality(Report):
    samples: int
    metric_vs: str
    before: dict
    after_pruning: dict
    after_recovery: dict | None = omitted()


@dataclass(frozen=True)
class PruneBytes(Report):
    unpruned: int
    pruned: int
    unpruned_gzip: int | None = omitted()  # unstructured: what sparsity buys
    pruned_gzip: int | None = omitted()


@dataclass(frozen=True)
class PruneReport(Report):
    model: PrunedModel
    method: str  # "structured" | "unstructured"
    ratio: float
    target_speedup: float | None
    round_to: int | None
    round_to_reason: str
    importance: str
    widths: dict[str, dict]  # layer -> {"before": ..., "after": ...}
    parameters: Counts
    macs: Macs
    runtime: str
    target: str
    data: PruneData
    sparsity: dict | None = omitted()  # unstructured
    note: str | None = omitted()
    latency: dict[str, RuntimeLatency] | None = omitted()  # the runtime timed -> both models' latency
    gate: Gate | None = omitted()
    quality: PruneQuality | None = omitted()
    recovery: Recovery | None = omitted()
    bytes: PruneBytes | None = omitted()  # absent when the gate failed (nothing but the report written)
    passed: bool = False

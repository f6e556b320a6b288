"""INT8 settings, validated up front so bad flags fail before any work is done."""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.errors import UsageError
from edgeopt.optimize.metrics import check_max_drop, default_max_drop, parse_metric

MODES = ("auto", "static", "dynamic", "blockwise")
CALIB_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Int8Config:
    mode: str = "auto"  # auto: build static and dynamic (blockwise when both fail), keep the fastest that passes
    calib_method: str = "minmax"
    metric: str | None = None  # None: cosine for embedders, top1 for labelled classifiers, else mse
    max_drop: float | None = None  # None: the metric's default (cosine 0.005, top1 0.005 = 0.5 pt)
    min_cosine: float = 0.98  # cosine metric: also the worst sample must stay above this
    calib_size: int = 256
    eval_size: int = 500
    eval_batch: int | None = None  # samples per call when the gate scores; None: 1 for text, 32 otherwise
    holdout: float = 0.25  # share of --calib held out for evaluation when --eval is absent
    max_fallback: float = 0.5  # give up when more than this share of quantizable nodes is FP32
    openvino: bool = True
    speed_check: bool = True  # keep an INT8 artifact only at <= 0.95x FP32's latency here (speed.MIN_SPEEDUP)
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"unknown --int8-mode {self.mode!r}; choose {', '.join(MODES)}")
        if self.calib_method not in CALIB_METHODS:
            raise UsageError(f"unknown --calib-method {self.calib_method!r}; choose {', '.join(CALIB_METHODS)}")
        if self.metric is not None:
            parse_metric(self.metric)
            if self.max_drop is not None:
                check_max_drop(self.metric, self.max_drop)
        elif self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise UsageError(f"--max-drop {self.max_drop} is out of range: use 0 <= X < 1 (0.005 = 0.5 points)")
        if not 0 < self.min_cosine <= 1:
            raise UsageError(f"--min-cosine {self.min_cosine} is out of range (0, 1]")
        if self.calib_size < 1 or self.eval_size < 1 or (self.eval_batch is not None and self.eval_batch < 1):
            raise UsageError("--calib-size, --eval-size and --eval-batch must be positive")

    def resolved_max_drop(self, metric: str) -> float:
        return self.max_drop if self.max_drop is not None else default_max_drop(metric)

"""The INT8 ladder as data: each rung says when it applies and how it builds a gated candidate;
one loop climbs a runtime's list (ort_rungs.ORT_LADDER, openvino_rungs.openvino_ladder) and the
speed check keeps the fastest candidate that passed. What each rung is for, and the measurements
that earned it its place, are in docs/INT8.md."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.metrics import Quality
from edgeopt.optimize.quantize.accuracy_gate import Scorer
from edgeopt.optimize.quantize.candidate import Int8Candidate
from edgeopt.optimize.quantize.config import Int8Config


@dataclass
class LadderContext:
    """What the rungs of one INT8 run read: the settings, the data, the gate, and the FP32 graphs."""

    cfg: Int8Config
    calib: Dataset
    scorer: Scorer  # the gate's scorer, FP32 reference computed; scorer.data is the held-out set
    passes: Callable[[Quality], bool]
    work: Path  # scratch folder (removed afterwards)
    stage: Path  # the export's staging folder, where kept artifacts go
    transformer: bool = False  # a Hugging Face / sentence-transformers encoder
    log: Callable[[str], None] = lambda m: None
    threads: int | None = None
    fp32_onnx: Path | None = None  # model.onnx with every node named (the quantizers address nodes by name)
    nodes: list[str] = field(default_factory=list)  # its weight nodes
    dynamic_source: Path | None = None  # the FP32 graph dynamic INT8 is made from (onnxruntime's fused one)
    dynamic_nodes: list[str] = field(default_factory=list)
    want_qdq: bool = False  # TensorRT is a target: it needs a symmetric QDQ model
    fp32_xml: Path | None = None  # the FP32 OpenVINO IR (None: no OpenVINO INT8)
    fused_attention: bool = False  # fp32_xml has fused attention (OpenVINO's PyTorch frontend)
    user_calibration: bool = True  # False: edgeopt's built-in titles stand in for the user's data
    probe_xml: Path | None = None  # OpenVINO's speed probe, calibrated in the background
    static_qdq: Int8Candidate | None = None  # the static QDQ model that passed (OpenVINO's QDQ rung)
    tables: bool = False  # the FP32 graph looks rows up in constant embedding tables (embeddings.has_tables)
    _serial: itertools.count = field(default_factory=itertools.count, repr=False)

    @property
    def evald(self) -> Dataset:
        return self.scorer.data

    def scratch(self, stem: str, suffix: str = ".onnx") -> Path:
        """A fresh file name in the work folder."""
        return self.work / f"{stem}-{next(self._serial)}{suffix}"


@dataclass(frozen=True)
class Rung:
    """One way to make an INT8 candidate: ``applies`` (given the candidates built so far) says
    whether it is tried; ``build`` makes and scores it (None: nothing to build for this model)."""

    name: str
    runtime: str
    applies: Callable[[LadderContext, list[Int8Candidate]], bool]
    build: Callable[[LadderContext], Int8Candidate | None]


def always(ctx: LadderContext, done: list[Int8Candidate]) -> bool:
    return True


def climb(rungs, ctx: LadderContext, *, stop_at_first_pass: bool = False) -> list[Int8Candidate]:
    """Build the candidates of the rungs that apply, in order; with ``stop_at_first_pass``, none
    after the first that passes the gate."""
    done: list[Int8Candidate] = []
    for rung in rungs:
        if stop_at_first_pass and any(c.passed for c in done):
            break
        if rung.applies(ctx, done):
            cand = rung.build(ctx)
            if cand is not None:
                done.append(cand)
    return done


def keep_fastest(candidates: list[Int8Candidate], ctx: LadderContext, fp32: Path | None) -> Int8Candidate | None:
    """The speed check: the fastest candidate that passed the gate, timed side by side with
    ``fp32`` and kept only when faster than it (speed.fastest); with --no-speed-check, the
    fastest whatever its speed against FP32."""
    from edgeopt.optimize.quantize import speed

    passing = [c for c in candidates if c.passed]
    return speed.fastest(passing, ctx.evald, ctx.threads, ctx.log, fp32=fp32 if ctx.cfg.speed_check else None)

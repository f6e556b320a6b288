"""INT8 for an exported model: each runtime's ladder of gated candidates, the fastest passing one
kept (ladder.py). Called by the export step with the verified FP32 ``model.onnx`` (the numerical
stand-in for the FP32 source: it matches PyTorch within 1e-4) and the calibration / evaluation data."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.metrics import Quality
from edgeopt.optimize.quantize import ort
from edgeopt.optimize.quantize.accuracy_gate import Scorer
from edgeopt.optimize.quantize.candidate import Int8Candidate
from edgeopt.optimize.quantize.config import Int8Config
from edgeopt.optimize.quantize.embeddings import has_tables
from edgeopt.optimize.quantize.ladder import LadderContext, climb, keep_fastest
from edgeopt.optimize.quantize.openvino_rungs import openvino_int8
from edgeopt.optimize.quantize.ort_rungs import ORT_LADDER


@dataclass(frozen=True)
class Int8Job:
    """What to quantize and how it is judged."""

    fp32_onnx: Path  # the verified FP32 model.onnx: the quality reference
    calib: Dataset
    evald: Dataset
    output: str  # the output the gate compares
    metric: str
    transformer: bool = False
    fp32_xml: Path | None = None  # the FP32 OpenVINO IR (None: no OpenVINO INT8)
    fused_attention: bool = False  # fp32_xml has fused attention
    ort_fp32: Path | None = None  # onnxruntime's fused-attention FP32 graph, for dynamic INT8 (ort_fused.py)
    want_qdq: bool = False  # TensorRT is a target: keep a passing static QDQ model for it
    user_calibration: bool = True  # False: edgeopt's built-in titles stand in for the user's data
    threads: int | None = None
    reference: Callable | None = None  # feeds -> output: score against this model instead (a teacher)
    reference_name: str | None = None


@dataclass
class Int8Outcome:
    metric: str
    max_drop: float
    candidates: list[Int8Candidate]
    onnx: Int8Candidate | None = None  # kept as model.int8.onnx
    openvino: Int8Candidate | None = None  # kept as openvino/model.int8.xml
    qdq: Int8Candidate | None = None  # kept as model.int8.qdq.onnx for TensorRT when model.int8.onnx is not QDQ
    seconds: float = 0.0
    calibration: dict = field(default_factory=dict)
    scorer: Scorer | None = None  # the gate's scorer (reference computed), for later checks of the kept files

    @property
    def passed(self) -> bool:
        """An INT8 artifact was kept for at least one runtime (the others keep FP32, with a note)."""
        return self.onnx is not None or self.openvino is not None or self.qdq is not None

    def to_json(self) -> dict:
        return {"metric": self.metric, "max_drop": self.max_drop, "passed": self.passed,
                "seconds": round(self.seconds, 1), "calibration": self.calibration,
                "candidates": [c.to_json() for c in self.candidates]}


def calibration_warnings(calib: Dataset) -> list[str]:
    warnings = []
    if len(calib) < 32:
        warnings.append(f"only {len(calib)} calibration samples: ranges may not cover real inputs (use >= 128)")
    pad = calib.padding_fraction()
    if pad is not None and pad > 0.5:
        warnings.append(f"{pad:.0%} of calibration positions are padding: statistics describe padding, not text")
    return warnings


def gate(max_drop: float, min_cosine: float) -> Callable[[Quality], bool]:
    """The accuracy gate's verdict: the drop within ``max_drop`` and, for cosine, the worst sample
    at or above ``min_cosine`` (against a reference model: losing at most ``1 - min_cosine`` beyond
    the FP32 model's worst sample there)."""
    def passes(q: Quality) -> bool:
        if q.metric != "cosine":
            return q.drop <= max_drop + 1e-12
        fp32 = q.details.get("fp32_details")
        floor = min_cosine if fp32 is None else fp32["min"] - (1 - min_cosine)
        return q.drop <= max_drop + 1e-12 and q.details["min"] >= floor

    return passes


def _context(job: Int8Job, stage: Path, cfg: Int8Config, log) -> LadderContext:
    """The scorer with its FP32 reference, and the FP32 graphs with every node named."""
    max_drop = cfg.resolved_max_drop(job.metric)
    passes = gate(max_drop, cfg.min_cosine)
    log(f"FP32 reference outputs on {len(job.evald)} held-out samples")
    scorer = Scorer(job.evald, job.output, job.metric, passes, batch_size=cfg.eval_batch, threads=job.threads,
                    max_drop=max_drop, min_cosine=cfg.min_cosine)
    scorer.set_reference(job.fp32_onnx, job.reference, job.reference_name)
    work = stage / ".int8-work"
    work.mkdir(exist_ok=True)
    fp32, nodes = ort.named_weight_nodes(job.fp32_onnx, work / "named.onnx")  # fallback addresses nodes by name
    dyn, dyn_nodes = (fp32, nodes) if job.ort_fp32 is None else \
        ort.named_weight_nodes(job.ort_fp32, work / "named-fused.onnx")
    return LadderContext(cfg=cfg, calib=job.calib, scorer=scorer, passes=passes, work=work, stage=stage,
                         transformer=job.transformer, log=log, threads=job.threads, fp32_onnx=fp32, nodes=nodes,
                         dynamic_source=dyn, dynamic_nodes=dyn_nodes, want_qdq=job.want_qdq,
                         fp32_xml=job.fp32_xml if cfg.openvino else None,
                         fused_attention=job.transformer and job.fp32_xml is not None and job.fused_attention,
                         user_calibration=job.user_calibration, tables=has_tables(job.fp32_onnx))


def _move(cand: Int8Candidate | None, final: Path) -> Int8Candidate | None:
    if cand is not None:
        shutil.move(cand.path, final)
        cand.path = final
    return cand


def quantize_int8(*, job: Int8Job, stage: Path, cfg: Int8Config, log: Callable[[str], None] = lambda m: None,
                  probe=None) -> Int8Outcome:
    """Climb onnxruntime's ladder, then OpenVINO's (also when onnxruntime's failed: NNCF may still
    pass), and keep the fastest passing candidate of each. ``job.want_qdq`` (TensorRT is a target)
    keeps a passing static QDQ model as ``model.int8.qdq.onnx`` when it is not the fastest one for
    onnxruntime. ``probe``: OpenVINO's speed probe, already calibrating in the background
    (openvino_rungs.background_probe; the caller cancels it)."""
    t0 = time.perf_counter()
    ctx = _context(job, stage, cfg, log)
    candidates = climb(ORT_LADDER, ctx)
    # the QDQ model for TensorRT (and OpenVINO's QDQ rung) whatever its speed in onnxruntime
    ctx.static_qdq = next((c for c in candidates if c.passed and c.name == "static"), None)
    ctx.probe_xml = probe.result() if probe is not None else None  # done before anything is timed
    chosen = keep_fastest(candidates, ctx, fp32=ctx.fp32_onnx)
    outcome = Int8Outcome(job.metric, cfg.resolved_max_drop(job.metric), candidates, scorer=ctx.scorer,
                          calibration={"samples": len(job.calib), "eval_samples": len(job.evald),
                                       "eval_batch": ctx.scorer.batch_size, "source": job.calib.source,
                                       "method": "nncf" if job.transformer else cfg.calib_method,
                                       "warnings": calibration_warnings(job.calib)})
    if ctx.fp32_xml is not None:
        outcome.openvino, tried = openvino_int8(ctx)
        candidates.extend(tried)
    outcome.onnx = _move(chosen, stage / "model.int8.onnx")
    if job.want_qdq and ctx.static_qdq is not None and ctx.static_qdq is not chosen:  # TensorRT: not timed here
        outcome.qdq = _move(ctx.static_qdq, stage / "model.int8.qdq.onnx")
    shutil.rmtree(ctx.work, ignore_errors=True)
    outcome.seconds = time.perf_counter() - t0
    return outcome

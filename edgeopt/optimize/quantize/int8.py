"""INT8 for an exported model: gated candidates per backend, the fastest passing one kept.

Called by the export pipeline with the verified FP32 ``model.onnx`` (the numerical stand-in for
the FP32 source: it matches PyTorch within 1e-4) and the calibration / evaluation data.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.optimize.quantize import ort, speed
from edgeopt.optimize.quantize.config import Int8Config
from edgeopt.optimize.quantize.gate import Candidate, Scorer, gated, said
from edgeopt.optimize.quantize.openvino_ladder import fused_ir, openvino_int8


@dataclass
class Int8Outcome:
    metric: str
    max_drop: float
    candidates: list[Candidate]
    onnx: Candidate | None = None  # kept as model.int8.onnx
    openvino: Candidate | None = None  # kept as openvino/model.int8.xml
    qdq: Candidate | None = None  # kept as model.int8.qdq.onnx for TensorRT when model.int8.onnx is not QDQ
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


def _passes_fn(metric: str, max_drop: float, min_cosine: float):
    def passes(q) -> bool:
        return q.drop <= max_drop + 1e-12 and (q.metric != "cosine" or q.details["min"] >= min_cosine)

    return passes


def quantize_int8(fp32_onnx: Path, stage: Path, *, calib: Dataset, evald: Dataset, cfg: Int8Config, output: str,
                  metric: str, text: bool, fp32_xml: Path | None = None, threads: int | None = None,
                  want_qdq: bool = False, ort_fp32: Path | None = None, user_calibration: bool = True,
                  log: Callable[[str], None] = lambda m: None, probe=None) -> Int8Outcome:
    """Gated INT8 candidates; ``want_qdq`` (TensorRT is a target) keeps a passing static QDQ model
    as ``model.int8.qdq.onnx`` when it is not the fastest one for ONNX Runtime. ``ort_fp32`` is an
    equivalent onnxruntime-only FP32 graph (fused attention, export/ort_fused.py) that dynamic INT8
    is built from; the quality reference stays ``fp32_onnx``. ``user_calibration`` False (edgeopt's
    built-in titles stand in for the user's data) makes OpenVINO try calibration-free INT8 first.

    ``probe``: OpenVINO's probe, already calibrating in the background (openvino_ladder.
    background_probe, started by the export step; the caller cancels it); without it, the probe is
    calibrated here when it is needed."""
    t0 = time.perf_counter()
    max_drop = cfg.resolved_max_drop(metric)
    passes = _passes_fn(metric, max_drop, cfg.min_cosine)
    log(f"FP32 reference outputs on {len(evald)} held-out samples")
    scorer = Scorer(evald, output, metric, passes, batch_size=cfg.eval_batch, threads=threads, max_drop=max_drop,
                    min_cosine=cfg.min_cosine)
    scorer.set_reference(fp32_onnx)
    work = stage / ".int8-work"
    work.mkdir(exist_ok=True)
    fp32_onnx, nodes = ort.named_weight_nodes(fp32_onnx, work / "named.onnx")  # fallback addresses nodes by name
    dyn_src, dyn_nodes = (fp32_onnx, nodes) if ort_fp32 is None else \
        ort.named_weight_nodes(ort_fp32, work / "named-fused.onnx")
    cache = work / "calibration-cache.json"
    counter = iter(range(10_000))
    rankings: dict[str, list[str]] = {}
    variants: dict[str, ort.DynamicVariants] = {}
    first_static: dict[str, Path] = {}

    def build_static(excluded):
        path = work / f"static-{next(counter)}.onnx"
        if text:  # transformers: NNCF's SmoothQuant + transformer rules (ORT's quantizer loses MiniLM)
            log(f"static INT8 with NNCF ({len(calib)} calibration samples, {len(excluded)} FP32 nodes)")
            ort.nncf_qdq(fp32_onnx, path, calib, transformer=True, exclude=excluded)
        else:
            log(f"static INT8 ({cfg.calib_method} calibration on {len(calib)} samples, {len(excluded)} FP32 nodes)")
            # asymmetric activations run faster in onnxruntime (ReLU folds away) but are not
            # TensorRT-ready: symmetric only when TensorRT is a target
            ort.quantize_static_qdq(fp32_onnx, path, calib, method=cfg.calib_method, exclude=excluded, cache=cache,
                                    progress=log, symmetric=want_qdq)
        if not excluded:
            first_static["path"] = path
        return path

    def build_dynamic(per_token):  # its "fallback" is per-token INT8, not FP32
        log(f"dynamic INT8 ({len(per_token)} nodes per-token)")
        if "dynamic" not in variants:  # quantized once; each attempt rewrites its per-token nodes
            variants["dynamic"] = ort.DynamicVariants(dyn_gate_src, work / "dynamic-base.onnx")
        return variants["dynamic"](per_token, work / f"dynamic-{next(counter)}.onnx")

    def dynamic_ranking(_first=None):
        """Nodes by the SQNR of their inputs after a per-call uint8 round trip (one FP32 run)."""
        if "dynamic" not in rankings:
            log("ranking nodes by dynamic-quantization sensitivity")
            rankings["dynamic"] = ort.dynamic_sensitivity(dyn_gate_src, calib, dyn_nodes)
        return rankings["dynamic"]

    def ranking(_first=None):
        """Nodes by the SQNR of their inputs in the all-INT8 static model (built once, shared)."""
        if "static" not in rankings:
            qdq = first_static.get("path")
            qdq = qdq if qdq is not None and qdq.exists() else build_static([])
            log("ranking nodes by quantization sensitivity")
            rankings["static"] = ort.qdq_sensitivity(fp32_onnx, qdq, calib, nodes)
        return rankings["static"]

    candidates = []
    # Transformers in ONNX Runtime: static QDQ measured 3x slower than dynamic INT8 on CPU (MiniLM
    # 6.3 vs 2.1 ms, docs/PERFORMANCE.md) and costs ~25 s to calibrate; auto builds it only for
    # TensorRT, which needs Q/DQ. OpenVINO INT8 comes from NNCF on the fused-attention IR instead.
    fused = text and fp32_xml is not None and fused_ir(fp32_xml)  # read the IR once
    skip_static = cfg.mode == "auto" and fused and not want_qdq
    if cfg.mode == "static" or (cfg.mode == "auto" and not skip_static):
        candidates.append(gated("static", "onnxruntime", build_static, scorer, passes, ranking, len(nodes),
                                cfg.max_fallback, log))
    if cfg.mode in ("auto", "dynamic"):
        dyn_gate_src, smoothing = _layernorm_smoothed(dyn_src, work / "dynamic-smoothed-fp32.onnx", calib, log)
        # per-token nodes stay INT8, so the FP32 share limit does not apply: any number may go per token
        dynamic = gated("dynamic", "onnxruntime", build_dynamic, scorer, passes, dynamic_ranking, len(dyn_nodes),
                        1.0, log)
        dynamic.extra["per_token_nodes"], dynamic.fallback_nodes = dynamic.fallback_nodes, []
        if smoothing:
            dynamic.extra["smooth"] = smoothing
        if not dynamic.passed:
            dynamic = _smoothed(dynamic, dyn_src, dyn_nodes, work / f"dynamic-{next(counter)}.onnx", calib, scorer,
                                passes, log)
        candidates.append(dynamic)
    if cfg.mode == "blockwise" or (cfg.mode in ("auto", "dynamic") and not any(c.passed for c in candidates)):
        blockwise = _blockwise(fp32_onnx, work, scorer, passes, len(nodes), log, asked=cfg.mode == "blockwise")
        if blockwise is not None:
            candidates.append(blockwise)
    if skip_static and not any(c.passed for c in candidates):  # skipped for speed, not quality: try it
        log("dynamic and blockwise INT8 failed the gate; trying static INT8")

        def faster_than_fp32(path):  # static QDQ of a transformer can be slower than FP32 in ORT
            ratio = speed.vs_fp32(path, fp32_onnx, evald, threads, log, threshold=1.0)
            return None if ratio < 1 else (f"not faster than FP32 ({ratio:.2f}x) even all-INT8, and FP32 "
                                           "fallback nodes would only add to that")

        candidates.append(gated("static", "onnxruntime", build_static, scorer, passes, ranking, len(nodes),
                                cfg.max_fallback, log, viable=faster_than_fp32))
    for c in candidates:  # NNCF (transformers) is symmetric; onnxruntime's quantizer only for TensorRT
        if c.name == "static":
            c.extra["activations"] = "symmetric" if text or want_qdq else "asymmetric"
    outcome = Int8Outcome(metric, max_drop, candidates,
                          calibration={"samples": len(calib), "eval_samples": len(evald),
                                       "eval_batch": scorer.batch_size, "source": calib.source,
                                       "method": "nncf" if text else cfg.calib_method,
                                       "warnings": calibration_warnings(calib)}, scorer=scorer)
    passing = [c for c in candidates if c.passed]
    # the QDQ model for TensorRT (and OpenVINO's QDQ way) whatever its speed in ONNX Runtime
    static = next((c for c in passing if c.name == "static"), None)
    probe_xml = probe.result() if probe is not None else None  # done before anything is timed
    chosen = speed.fastest(passing, evald, threads, log, fp32=fp32_onnx if cfg.speed_check else None)
    if cfg.openvino and fp32_xml is not None:  # also when ORT INT8 failed: NNCF may still pass
        outcome.openvino = openvino_int8(static, fp32_xml, stage, work, calib, scorer, passes, text, fused, threads,
                                     log, dynamic_first=not user_calibration, speed_check=cfg.speed_check,
                                     record=candidates, probe_xml=probe_xml)
        if outcome.openvino is not None:
            candidates.append(outcome.openvino)
    if chosen is not None:
        final = stage / "model.int8.onnx"
        shutil.move(chosen.path, final)
        chosen.path = final
        outcome.onnx = chosen
    if want_qdq and static is not None and static is not chosen:  # TensorRT's speed is not measured here
        shutil.move(static.path, stage / "model.int8.qdq.onnx")
        static.path = stage / "model.int8.qdq.onnx"
        outcome.qdq = static
    shutil.rmtree(work, ignore_errors=True)
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _blockwise(src: Path, work: Path, scorer: Scorer, passes, n_nodes: int, log,
               asked: bool = False) -> Candidate | None:
    """ONNX Runtime's last rung: blockwise INT8 (ort.quantize_blockwise, MatMulNBits), block sizes
    from coarse (fast) to fine (accurate); the first that passes, else the closest. None when no
    weight node is a MatMul, or, as a rung (not ``asked`` for by --int8-mode blockwise), when fewer
    than half are (a CNN: its convolutions would stay FP32)."""
    t, best = time.perf_counter(), None
    for i, block in enumerate(ort.BLOCK_SIZES):
        log(f"blockwise INT8 (MatMulNBits), blocks of {block}")
        path = work / f"blockwise-{block}.onnx"
        converted = ort.quantize_blockwise(src, path, block)
        if not converted and asked:
            raise UsageError(f"--int8-mode blockwise quantizes MatMul weights, and none of this model's {n_nodes} "
                             "weight nodes is a MatMul (convolutions?): use --int8-mode auto or static")
        if not converted or (converted * 2 < n_nodes and not asked):
            path.unlink(missing_ok=True)
            log(f"blockwise INT8: {converted} of {n_nodes} weight nodes are MatMuls; not tried")
            return None
        q = scorer(path)
        log(f"blockwise INT8, blocks of {block}: {said(q)}")
        cand = Candidate("blockwise", path, "onnxruntime", q, passed=passes(q),
                         extra={"block_size": block, "quantizable_nodes": n_nodes})
        if best is None or cand.passed or q.drop < best.quality.drop:
            if best is not None:
                best.path.unlink(missing_ok=True)
            best = cand
        else:
            path.unlink(missing_ok=True)
        if cand.passed:
            break
    best.seconds, best.attempts = time.perf_counter() - t, i + 1  # for all the block sizes tried
    return best


def _layernorm_smoothed(src: Path, path: Path, calib: Dataset, log) -> tuple[Path, dict | None]:
    """The dynamic search's source graph: ``src`` with SmoothQuant scaling in front of the nodes that
    read a LayerNorm output (``path``), and its manifest record; ``src`` and None when there are none.
    Their outlier channels are what per-token scales cannot fix, and each costs one Mul, where a
    per-token node costs five small ops (~15 us per node at title lengths, docs/PERFORMANCE.md)."""
    from edgeopt.optimize.quantize import smooth

    done = smooth.smooth_file(src, path, calib, layernorm_only=True)
    if not done:
        return src, None
    log(f"dynamic INT8: SmoothQuant scaling in front of {len(done)} LayerNorm-fed node(s)")
    return path, {"alpha": smooth.ALPHA, "nodes": len(done), "inputs": "layernorm"}


def _smoothed(dynamic: Candidate, src: Path, nodes: list[str], path: Path, calib: Dataset, scorer: Scorer, passes,
              log) -> Candidate:
    """Dynamic INT8's last rung, tried when every per-token choice failed the gate: SmoothQuant
    channel scaling (smooth.py) with every node per token. Returns the better of the two."""
    from edgeopt.optimize.quantize import smooth

    t = time.perf_counter()
    log("dynamic INT8: SmoothQuant channel scaling with every node per token")
    fp32 = path.with_name(path.stem + "-fp32.onnx")
    smoothed = smooth.smooth_file(src, fp32, calib)
    if not smoothed:
        fp32.unlink(missing_ok=True)
        return dynamic
    ort.quantize_dynamic_int8(fp32, path, per_token=nodes)
    fp32.unlink()
    q = scorer(path)
    log(f"INT8 with SmoothQuant and {len(nodes)} node(s) per token: {said(q)}")
    cand = Candidate("dynamic", path, "onnxruntime", q, [], passes(q), dynamic.seconds + time.perf_counter() - t,
                     dynamic.attempts + 1, extra={**dynamic.extra, "per_token_nodes": list(nodes),
                                                  "smooth": {"alpha": smooth.ALPHA, "nodes": len(smoothed)}})
    if cand.passed or dynamic.quality is None or q.drop < dynamic.quality.drop:
        dynamic.path.unlink(missing_ok=True)
        return cand
    path.unlink(missing_ok=True)
    return dynamic

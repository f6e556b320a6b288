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
from edgeopt.optimize.quantize import ort
from edgeopt.optimize.quantize.config import Int8Config
from edgeopt.optimize.quantize.gate import Candidate, Scorer, gated


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

    ``probe``: OpenVINO's probe already calibrating in the background (background_probe), else
    it is started here when needed."""
    fused = text and fp32_xml is not None and _fused(fp32_xml)  # read the IR once
    if probe is None:
        probe = background_probe(fp32_xml, stage, calib, cfg, text, user_calibration, log)
    try:
        return _quantize_int8(fp32_onnx, stage, calib=calib, evald=evald, cfg=cfg, output=output, metric=metric,
                              text=text, fp32_xml=fp32_xml, threads=threads, want_qdq=want_qdq, ort_fp32=ort_fp32,
                              user_calibration=user_calibration, log=log, fused=fused, probe=probe)
    finally:
        if probe is not None:
            probe.cancel()


def _quantize_int8(fp32_onnx: Path, stage: Path, *, calib: Dataset, evald: Dataset, cfg: Int8Config, output: str,
                   metric: str, text: bool, fp32_xml: Path | None, threads: int | None, want_qdq: bool,
                   ort_fp32: Path | None, user_calibration: bool, log: Callable[[str], None], fused: bool,
                   probe) -> Int8Outcome:
    t0 = time.perf_counter()
    max_drop = cfg.resolved_max_drop(metric)
    passes = _passes_fn(metric, max_drop, cfg.min_cosine)
    log(f"FP32 reference outputs on {len(evald)} held-out samples")
    scorer = Scorer(evald, output, metric, passes, threads=threads, max_drop=max_drop, min_cosine=cfg.min_cosine)
    scorer.set_reference(fp32_onnx)
    work = stage / ".int8-work"
    work.mkdir(exist_ok=True)
    fp32_onnx = ort.ensure_node_names(fp32_onnx, work / "named.onnx")  # fallback addresses nodes by name
    nodes = ort.weight_nodes(fp32_onnx)
    dyn_src = fp32_onnx if ort_fp32 is None else ort.ensure_node_names(ort_fp32, work / "named-fused.onnx")
    dyn_nodes = nodes if ort_fp32 is None else ort.weight_nodes(dyn_src)
    cache = work / "calibration-cache.json"
    counter = iter(range(10_000))
    rankings: dict[str, list[str]] = {}
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
        return ort.quantize_dynamic_int8(dyn_gate_src, work / f"dynamic-{next(counter)}.onnx", per_token=per_token)

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
        if skip_static and not dynamic.passed:  # skipped for speed, not quality: try it before giving up
            log("dynamic INT8 failed the gate; trying static INT8")

            def faster_than_fp32(path):  # static QDQ of a transformer can be slower than FP32 in ORT
                ratio = _vs_fp32(path, fp32_onnx, evald, threads, log, threshold=1.0)
                return None if ratio < 1 else (f"not faster than FP32 ({ratio:.2f}x) even all-INT8, and FP32 "
                                               "fallback nodes would only add to that")

            candidates.append(gated("static", "onnxruntime", build_static, scorer, passes, ranking, len(nodes),
                                    cfg.max_fallback, log, viable=faster_than_fp32))
    for c in candidates:  # NNCF (transformers) is symmetric; onnxruntime's quantizer only for TensorRT
        if c.name == "static":
            c.extra["activations"] = "symmetric" if text or want_qdq else "asymmetric"
    outcome = Int8Outcome(metric, max_drop, candidates,
                          calibration={"samples": len(calib), "eval_samples": len(evald), "source": calib.source,
                                       "method": "nncf" if text else cfg.calib_method,
                                       "warnings": calibration_warnings(calib)}, scorer=scorer)
    passing = [c for c in candidates if c.passed]
    # the QDQ model for TensorRT (and OpenVINO's QDQ way) whatever its speed in ONNX Runtime
    static = next((c for c in passing if c.name == "static"), None)
    probe_xml = probe.result() if probe is not None else None  # done before anything is timed
    chosen = _fastest(passing, evald, threads, log, fp32=fp32_onnx if cfg.speed_check else None)
    if cfg.openvino and fp32_xml is not None:  # also when ORT INT8 failed: NNCF may still pass
        outcome.openvino = _openvino(static, fp32_xml, stage, work, calib, scorer, passes, text, fused, threads,
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
    log(f"INT8 with SmoothQuant and {len(nodes)} node(s) per token: {q.metric} {q.value:.4f} (drop {q.drop:.4f})")
    cand = Candidate("dynamic", path, "onnxruntime", q, [], passes(q), dynamic.seconds + time.perf_counter() - t,
                     dynamic.attempts + 1, extra={**dynamic.extra, "per_token_nodes": list(nodes),
                                                  "smooth": {"alpha": smooth.ALPHA, "nodes": len(smoothed)}})
    if cand.passed or dynamic.quality is None or q.drop < dynamic.quality.drop:
        dynamic.path.unlink(missing_ok=True)
        return cand
    path.unlink(missing_ok=True)
    return dynamic


def _fused(xml: Path) -> bool:
    from edgeopt.export.openvino import has_fused_attention

    return has_fused_attention(xml)


# An INT8 artifact is kept only at <= this share of FP32's p50 on one held-out sample: that
# sample is a proxy for the real workload, and near 1.0 the proxy's verdict can flip (the demo's
# OpenVINO INT8 read 0.966x FP32 on one title, 1.2x in the demo's own benchmark, AMD EPYC, no VNNI).
MIN_SPEEDUP = 0.95


def _p50(runs: list[tuple[str, str, str]], evald: Dataset, threads, fp32: str | None = None,
         threshold: float = MIN_SPEEDUP) -> dict[str, float]:
    """Side-by-side p50 (ms) of (path, runtime, precision) runs on one evaluation sample. The timing
    stops early once the verdicts are settled (speed.settled): each run's p50 over ``fp32``'s on
    one side of ``threshold`` in every round, and the runs in one order of speed."""
    from edgeopt.optimize.quantize.speed import compare_latency, settled

    return compare_latency(runs, next(evald.batches(1))[0], threads=threads or 0,
                           until=settled(fp32, threshold))


def _vs_fp32(path: Path, fp32: Path, evald: Dataset, threads, log, runtime: str = "onnxruntime",
             threshold: float = MIN_SPEEDUP) -> float:
    """p50 of ``path`` over p50 of ``fp32``, side by side in one timing run, which ends early when
    the ratio is clearly on one side of ``threshold``."""
    log(f"timing {path.name} against FP32")
    p50 = _p50([(str(path), runtime, "int8"), (str(fp32), runtime, "fp32")], evald, threads, fp32=str(fp32),
               threshold=threshold)
    return p50[str(path)] / p50[str(fp32)]


def _not_faster(ratio: float) -> str:
    return f"not faster than FP32 ({ratio:.2f}x, needs <= {MIN_SPEEDUP}x)"


def _fastest(passing: list[Candidate], evald: Dataset, threads, log, fp32: Path | None = None) -> Candidate | None:
    """The fastest passing candidate, timed side by side with ``fp32`` (same runtime, same run).

    A candidate slower than MIN_SPEEDUP x FP32 here is dropped: an INT8 artifact that runs slower
    than the FP32 one is not worth shipping. Seen for MiniLM: OpenVINO static INT8 on a CPU
    without VNNI (AVX2 only) ran 1.39x its FP32 IR, and in ONNX Runtime the float islands of a
    static model with 17 FP32 nodes cost more than INT8 saved (1.2x FP32 at 64 tokens). ``fp32``
    None (``--no-speed-check``) keeps the fastest passing candidate whatever its speed against
    FP32, e.g. when the devices have VNNI and the exporting machine has not."""
    if not passing:
        return None
    if len(passing) == 1 and fp32 is None:
        return passing[0]
    log(f"timing {len(passing)} passing candidate(s) side by side" + (" and FP32" if fp32 is not None else ""))
    runs = [(str(c.path), c.runtime, "int8") for c in passing]
    if fp32 is not None:
        runs.append((str(fp32), passing[0].runtime, "fp32"))
    p50 = _p50(runs, evald, threads, fp32=None if fp32 is None else str(fp32))
    for c in passing:
        c.p50_ms = round(p50[str(c.path)], 3)
    if fp32 is not None:
        base = p50[str(fp32)]
        for c in passing:
            c.extra["vs_fp32"] = round(c.p50_ms / base, 3)
            if c.p50_ms > MIN_SPEEDUP * base:  # it still passed the quality gate: "rejected" says why
                islands = f" with {len(c.fallback_nodes)} FP32 nodes" if c.fallback_nodes else ""
                c.extra["rejected"] = f"{_not_faster(c.p50_ms / base)}{islands} on this machine"
                log(f"{c.name}: {c.extra['rejected']}: not kept")
        passing = [c for c in passing if not c.extra.get("rejected")]
    return min(passing, key=lambda c: c.p50_ms) if passing else None


# On a CPU without an INT8 dot-product instruction (VNNI, AMX), OpenVINO's CPU plugin runs quantized
# FullyConnected layers through oneDNN's legacy jit_gemm_i8 kernel: MiniLM's static INT8 IR ran
# 1.21-1.45x its FP32 IR on an AMD EPYC with AVX2 only (PERF_COUNT: 17.1 ms in quantized FC layers
# against 11.6 ms in FP32 ones), and the export spent 18.7 s calibrating it on 256 titles and
# scoring it before the speed check dropped it. There, an IR calibrated on PROBE_SAMPLES samples is
# timed first: NNCF builds the same graph from fewer statistics, so it runs at the full IR's speed,
# and NNCF takes 9.9 s instead of 18.5 s, with no scoring (MiniLM --int8 export 88.6 -> 75.0 s there,
# docs/PERFORMANCE.md).
PROBE_SAMPLES = 8


def _int8_dot_product() -> bool:
    """Whether this CPU has an INT8 dot-product instruction (VNNI, AMX; Arm dot product)."""
    from edgeopt.doctor import cpu_info

    return cpu_info()["int8_acceleration"]


def _probe_args(fp32_xml: Path, work: Path, calib: Dataset) -> tuple[tuple, dict]:
    """nncf_quantize's arguments for the probe: the first NNCF way for a transformer, on
    PROBE_SAMPLES samples, without bias correction (the same graph, so the same speed)."""
    from edgeopt.optimize.quantize import openvino as ovq

    return ((fp32_xml, work / "nncf-probe" / "model.xml", calib.subsample(PROBE_SAMPLES)),
            {"transformer": True, "preset": ovq.TRANSFORMER_PRESETS[0], "bias_correction": False})


def background_probe(fp32_xml: Path | None, stage: Path, calib: Dataset, cfg: Int8Config, text: bool,
                     user_calibration: bool, log):
    """When OpenVINO's first way will be probed (_slow_probe: NNCF first, i.e. a transformer's IR
    with fused attention and the user's data; the speed check on; a CPU without an INT8 dot
    product), the probe's calibration started in a background process (openvino.InBackground),
    else None. It runs while the export does other work (ONNX Runtime's fused graph, candidates
    and scores) and is waited for before anything is timed (MiniLM export here: XX)."""
    if not (text and fp32_xml is not None and cfg.openvino and user_calibration and cfg.speed_check
            and _fused(fp32_xml) and not _int8_dot_product()):
        return None
    from edgeopt.optimize.quantize import openvino as ovq

    log(f"this CPU has no INT8 dot-product instruction: calibrating an OpenVINO INT8 probe on {PROBE_SAMPLES} "
        "samples in the background")
    args, kwargs = _probe_args(fp32_xml, stage / ".int8-work", calib)
    return ovq.InBackground(*args, **kwargs)


def _slow_probe(fp32_xml: Path, work: Path, calib: Dataset, evald: Dataset, threads, log,
                xml: Path | None = None) -> Candidate | None:
    """NNCF's first way for a transformer (performance preset) calibrated on PROBE_SAMPLES samples
    (``xml``: already calibrated, _start_probe), timed against the FP32 IR; the rejected candidate
    when it is not faster than MIN_SPEEDUP x FP32, else None (and the ladder runs as usual)."""
    from edgeopt.optimize.quantize import openvino as ovq

    t = time.perf_counter()
    args, kwargs = _probe_args(fp32_xml, work, calib)
    preset = kwargs["preset"]
    if xml is None:
        log(f"this CPU has no INT8 dot-product instruction: timing OpenVINO INT8 calibrated on {PROBE_SAMPLES} "
            "samples against FP32 before calibrating it fully")
        xml = ovq.nncf_quantize(*args, **kwargs)
    ratio = _vs_fp32(xml, fp32_xml, evald, threads, log, runtime="openvino")
    if ratio <= MIN_SPEEDUP:
        log(f"the probe ran {ratio:.2f}x FP32: calibrating OpenVINO INT8 fully")
        return None
    return Candidate("openvino-nncf", xml, "openvino", None, [], False, time.perf_counter() - t, 1,
                     extra={"nncf_preset": preset, "vs_fp32": round(ratio, 3),
                            "probe": {"calibration_samples": PROBE_SAMPLES},
                            "rejected": f"{_not_faster(ratio)} on this machine, which has no INT8 dot-product "
                                        f"instruction; the probe was calibrated on {PROBE_SAMPLES} samples"})


def _openvino(static: Candidate | None, fp32_xml: Path, stage: Path, work: Path, calib: Dataset, scorer: Scorer,
              passes, text: bool, fused: bool, threads, log, dynamic_first: bool = False,
              speed_check: bool = True, record: list | None = None, probe_xml: Path | None = None) -> Candidate | None:
    """OpenVINO INT8 up to three ways: the gated QDQ ONNX as is, NNCF on the IR, and (transformers)
    dynamic INT8 (INT8 weights, activations quantized at run time; openvino.py); keep the fastest
    that passes.

    Transformers try one way at a time and stop at the first that passes: NNCF on the IR first when
    the IR has fused attention (PyTorch frontend; the QDQ graph spells attention out and is ~10 %
    slower), else the QDQ conversion (NNCF on an unfused IR costs ~20 s and measured no faster);
    NNCF tries its "performance" preset (symmetric activations, ~10 % faster) before its transformer
    default "mixed" (openvino.py). Dynamic INT8 comes next, ~15 % slower than static but much closer
    to FP32. ``dynamic_first`` (the calibration data is not the user's) tries dynamic first: it needs
    no calibration, and static INT8 calibrated on generic titles lost the min-cosine target on real
    ones.
    Other models time QDQ and NNCF both: NNCF placed quantizers better for a CNN (0.58 vs 0.71 ms).
    On a CPU without an INT8 dot-product instruction, a transformer's first NNCF way is timed on a
    cheap probe before it is calibrated and scored (_slow_probe): there, no way was faster than FP32.
    When none is kept, the ways tried are appended to ``record`` (the manifest's candidates)."""
    from edgeopt.optimize.quantize import openvino as ovq

    def from_qdq():
        t = time.perf_counter()
        log("OpenVINO INT8 from the gated QDQ ONNX")
        qdq_xml = ovq.from_qdq(static.path, work / "qdq" / "model.xml")
        q = scorer(qdq_xml, "openvino", "int8")
        return Candidate("openvino-qdq", qdq_xml, "openvino", q, list(static.fallback_nodes), passes(q),
                         time.perf_counter() - t, 1)

    def nncf_way(preset: str | None):
        def from_nncf():
            t = time.perf_counter()
            log("OpenVINO INT8 with NNCF on the IR" + (f" ({preset} preset)" if preset else ""))
            nncf_xml = ovq.nncf_quantize(fp32_xml, work / f"nncf-{preset or 'default'}" / "model.xml", calib,
                                         transformer=text, preset=preset)
            q = scorer(nncf_xml, "openvino", "int8")
            return Candidate("openvino-nncf", nncf_xml, "openvino", q, [], passes(q), time.perf_counter() - t, 1,
                             extra={"nncf_preset": preset} if preset else {})

        return from_nncf

    def from_dynamic():
        t = time.perf_counter()
        log("OpenVINO dynamic INT8: INT8 weights, activations quantized per group at run time")
        model, best = ovq.compress_int8(fp32_xml), None
        for i, group in enumerate(ovq.DYNAMIC_GROUPS):
            xml = ovq.save_dynamic(model, work / f"dynamic-{group}" / "model.xml", group)
            q = scorer(xml, "openvino", "int8")
            log(f"OpenVINO dynamic INT8, activation groups of {group}: {q.metric} {q.value:.4f} (drop {q.drop:.4f})")
            cand = Candidate("openvino-dynamic", xml, "openvino", q, [], passes(q), time.perf_counter() - t, i + 1,
                             extra={"activation_group_size": group})
            if best is None or cand.passed or q.drop < best.quality.drop:
                best = cand
            if cand.passed:
                break
        return best

    ways = [from_qdq] if static is not None else []
    # transformers: symmetric activations first (faster), NNCF's transformer default next
    nncf_ways = [nncf_way(p) for p in ovq.TRANSFORMER_PRESETS] if text else [nncf_way(None)]
    ways = nncf_ways + ways if fused else ways + nncf_ways
    if text:  # dynamic INT8 after the first static way (the NNCF presets count as one way)
        first_static = len(nncf_ways) if fused or static is None else 1
        ways.insert(0 if dynamic_first else first_static, from_dynamic)
    if text and speed_check and ways[0] is nncf_ways[0] and not _int8_dot_product():
        probe = _slow_probe(fp32_xml, work, calib, scorer.data, threads, log, xml=probe_xml)
        if probe is not None:  # the other ways are slower still there (dynamic INT8 ~1.1x FP32)
            log(f"no OpenVINO INT8: {probe.extra['rejected']}; OpenVINO keeps FP32")
            if record is not None:
                record.append(probe)
            return None
    options = []
    for way in ways:
        if text and any(c.passed for c in options):
            break
        options.append(way())
    best = _fastest([c for c in options if c.passed], scorer.data, threads, log,
                    fp32=fp32_xml if speed_check else None)
    if best is None:
        slow = any(c.extra.get("rejected") for c in options)
        log(f"no OpenVINO INT8 variant {'faster than FP32' if slow else 'passed the gate'}; OpenVINO keeps FP32")
        if record is not None:  # the manifest still says what was tried and why none was kept
            record.extend(options)
        return None
    final = stage / "openvino" / "model.int8.xml"
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(best.path, final)
    shutil.move(best.path.with_suffix(".bin"), final.with_suffix(".bin"))
    best.path = final
    best.extra["variants"] = [c.to_json() for c in options]
    return best

"""OpenVINO INT8 for the accuracy gate: the ladder of ways (NNCF on the IR, the gated QDQ ONNX,
dynamic INT8), the speed check against the FP32 IR, and the cheap probe that goes first on a CPU
without an INT8 dot-product instruction (calibrated in the background where it can be)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.quantize import speed
from edgeopt.optimize.quantize.config import Int8Config
from edgeopt.optimize.quantize.gate import Candidate, Scorer, said


def fused_ir(xml: Path) -> bool:
    """Whether the IR has fused attention (OpenVINO's PyTorch frontend; not the ONNX route)."""
    from edgeopt.export.openvino import has_fused_attention

    return has_fused_attention(xml)


# On a CPU without an INT8 dot-product instruction (VNNI, AMX), OpenVINO's CPU plugin runs quantized
# FullyConnected layers through oneDNN's legacy jit_gemm_i8 kernel: MiniLM's static INT8 IR ran
# 1.21-1.45x its FP32 IR on an AMD EPYC with AVX2 only (PERF_COUNT: 17.1 ms in quantized FC layers
# against 11.6 ms in FP32 ones), and the export spent 18.7 s calibrating it on 256 titles and
# scoring it before the speed check dropped it. There, an IR calibrated on PROBE_SAMPLES samples is
# timed first: NNCF builds the same graph from fewer statistics, so it runs at the full IR's speed,
# and NNCF takes 9.9 s instead of 18.5 s, with no scoring (MiniLM --int8 export 88.6 -> 75.0 s there,
# docs/PERFORMANCE.md). Without bias correction (no effect on speed) it takes ~7.5 s, and that runs
# in the background while onnxruntime's candidates are made (background_probe).
PROBE_SAMPLES = 8


def int8_dot_product() -> bool:
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
    and scores) and is waited for before anything is timed. MiniLM's --int8 export went from the
    probe's end at 61.3 s to 54.1 s in single runs on a 2-core AVX2 EPYC (docs/PERFORMANCE.md)."""
    if not (text and fp32_xml is not None and cfg.openvino and user_calibration and cfg.speed_check
            and fused_ir(fp32_xml) and not int8_dot_product()):
        return None
    from edgeopt.optimize.quantize import openvino as ovq

    log(f"this CPU has no INT8 dot-product instruction: calibrating an OpenVINO INT8 probe on {PROBE_SAMPLES} "
        "samples in the background")
    args, kwargs = _probe_args(fp32_xml, stage / ".int8-work", calib)
    return ovq.InBackground(*args, **kwargs)


def _slow_probe(fp32_xml: Path, work: Path, calib: Dataset, evald: Dataset, threads, log,
                xml: Path | None = None) -> Candidate | None:
    """NNCF's first way for a transformer (performance preset) calibrated on PROBE_SAMPLES samples
    (``xml``: already calibrated, background_probe), timed against the FP32 IR; the rejected candidate
    when it is not faster than speed.MIN_SPEEDUP x FP32, else None (and the ladder runs as usual)."""
    from edgeopt.optimize.quantize import openvino as ovq

    t = time.perf_counter()
    args, kwargs = _probe_args(fp32_xml, work, calib)
    preset = kwargs["preset"]
    if xml is None:
        log(f"this CPU has no INT8 dot-product instruction: timing OpenVINO INT8 calibrated on {PROBE_SAMPLES} "
            "samples against FP32 before calibrating it fully")
        xml = ovq.nncf_quantize(*args, **kwargs)
    ratio = speed.vs_fp32(xml, fp32_xml, evald, threads, log, runtime="openvino")
    if ratio <= speed.MIN_SPEEDUP:
        log(f"the probe ran {ratio:.2f}x FP32: calibrating OpenVINO INT8 fully")
        return None
    return Candidate("openvino-nncf", xml, "openvino", None, [], False, time.perf_counter() - t, 1,
                     extra={"nncf_preset": preset, "vs_fp32": round(ratio, 3),
                            "probe": {"calibration_samples": PROBE_SAMPLES},
                            "rejected": f"{speed.not_faster(ratio)} on this machine, which has no INT8 dot-product "
                                        f"instruction; the probe was calibrated on {PROBE_SAMPLES} samples"})


def openvino_int8(static: Candidate | None, fp32_xml: Path, stage: Path, work: Path, calib: Dataset,
                  scorer: Scorer, passes, text: bool, fused: bool, threads, log, dynamic_first: bool = False,
                  speed_check: bool = True, record: list | None = None,
                  probe_xml: Path | None = None) -> Candidate | None:
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
    ``probe_xml``: the probe, already calibrated (background_probe). When none is kept, the ways
    tried are appended to ``record`` (the manifest's candidates)."""
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
            log(f"OpenVINO dynamic INT8, activation groups of {group}: {said(q)}")
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
    if text and speed_check and ways[0] is nncf_ways[0] and not int8_dot_product():
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
    best = speed.fastest([c for c in options if c.passed], scorer.data, threads, log,
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

"""OpenVINO's INT8 ladder: NNCF on the IR, the gated QDQ ONNX read by OpenVINO, and (transformers)
dynamic INT8; the speed check against the FP32 IR; and the cheap probe that goes first on a CPU
without an INT8 dot-product instruction (calibrated in the background where it can be)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.quantize import speed
from edgeopt.optimize.quantize.accuracy_gate import describe_score
from edgeopt.optimize.quantize.candidate import Int8Candidate, NncfIr, OpenvinoDynamic, OpenvinoWeights, Recipe
from edgeopt.optimize.quantize.config import Int8Config
from edgeopt.optimize.quantize.ladder import LadderContext, Rung, always, climb, keep_fastest

# On a CPU without an INT8 dot-product instruction (VNNI, AMX), OpenVINO's CPU plugin runs quantized
# FullyConnected layers through a legacy int8 GEMM kernel, and a transformer's INT8 IR measured
# slower than its FP32 IR (docs/INT8.md). There, an IR calibrated on PROBE_SAMPLES samples is timed
# first: NNCF builds the same graph from fewer statistics, so it runs at the full IR's speed, in
# about half the calibration time and with no scoring. Without bias correction (no effect on speed)
# it is cheaper still, and it runs in the background while onnxruntime's candidates are made.
PROBE_SAMPLES = 8


def int8_dot_product() -> bool:
    """Whether this CPU has an INT8 dot-product instruction (VNNI, AMX; Arm dot product)."""
    from edgeopt.cpu import cpu_info

    return cpu_info().int8_acceleration


def _probe_args(fp32_xml: Path, work: Path, calib: Dataset) -> tuple[tuple, dict]:
    """nncf_quantize's arguments for the probe: the first NNCF way for a transformer, on
    PROBE_SAMPLES samples, without bias correction (the same graph, so the same speed)."""
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    return ((fp32_xml, work / "nncf-probe" / "model.xml", calib.subsample(PROBE_SAMPLES)),
            {"transformer": True, "preset": ovq.TRANSFORMER_PRESETS[0], "bias_correction": False})


def background_probe(*, fp32_xml: Path | None, stage: Path, calib: Dataset, cfg: Int8Config, transformer: bool,
                     fused_attention: bool, user_calibration: bool, log):
    """When OpenVINO's first rung will be probed (_slow_probe: NNCF first, i.e. a transformer's IR
    with fused attention and the user's data; the speed check on; a CPU without an INT8 dot
    product), the probe's calibration started in a background process (openvino_nncf.InBackground),
    else None. It runs while the export does other work and is waited for before anything is timed."""
    if not (transformer and fp32_xml is not None and cfg.openvino and user_calibration and cfg.speed_check
            and fused_attention and not int8_dot_product()):
        return None
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    log(f"this CPU has no INT8 dot-product instruction: calibrating an OpenVINO INT8 probe on {PROBE_SAMPLES} "
        "samples in the background")
    args, kwargs = _probe_args(fp32_xml, stage / ".int8-work", calib)
    return ovq.InBackground(*args, **kwargs)


def _slow_probe(ctx: LadderContext) -> Int8Candidate | None:
    """NNCF's first rung for a transformer (performance preset) calibrated on PROBE_SAMPLES samples
    (``ctx.probe_xml``: already calibrated, background_probe), timed against the FP32 IR; the
    rejected candidate when it is not faster than speed.MIN_SPEEDUP x FP32, else None (and the
    ladder runs as usual)."""
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    t, xml = time.perf_counter(), ctx.probe_xml
    args, kwargs = _probe_args(ctx.fp32_xml, ctx.work, ctx.calib)
    if xml is None:
        ctx.log(f"this CPU has no INT8 dot-product instruction: timing OpenVINO INT8 calibrated on {PROBE_SAMPLES} "
                "samples against FP32 before calibrating it fully")
        xml = ovq.nncf_quantize(*args, **kwargs)
    ratio = speed.vs_fp32(xml, ctx.fp32_xml, ctx.evald, ctx.threads, ctx.log, runtime="openvino")
    if ratio <= speed.MIN_SPEEDUP:
        ctx.log(f"the probe ran {ratio:.3f}x FP32: calibrating OpenVINO INT8 fully")
        return None
    return Int8Candidate("openvino-nncf", xml, "openvino", None, [], False, time.perf_counter() - t, 1,
                         recipe=NncfIr(kwargs["preset"]), vs_fp32=round(ratio, 3), probe_samples=PROBE_SAMPLES,
                         rejected=f"{speed.not_faster(ratio)} on this machine, which has no INT8 dot-product "
                                  f"instruction; the probe was calibrated on {PROBE_SAMPLES} samples")


def _from_qdq(ctx: LadderContext) -> Int8Candidate:
    """The gated static QDQ ONNX as it is: OpenVINO runs QDQ graphs with its INT8 kernels."""
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    t, static = time.perf_counter(), ctx.static_qdq
    ctx.log("OpenVINO INT8 from the gated QDQ ONNX")
    xml = ovq.from_qdq(static.path, ctx.work / "qdq" / "model.xml")
    q = ctx.scorer(xml, "openvino", "int8")
    return Int8Candidate("openvino-qdq", xml, "openvino", q, list(static.fallback_nodes), ctx.passes(q),
                         time.perf_counter() - t, 1, recipe=Recipe())


def _nncf(preset: str | None):
    def build(ctx: LadderContext) -> Int8Candidate:
        from edgeopt.optimize.quantize import openvino_nncf as ovq

        t = time.perf_counter()
        ctx.log("OpenVINO INT8 with NNCF on the IR" + (f" ({preset} preset)" if preset else ""))
        xml = ovq.nncf_quantize(ctx.fp32_xml, ctx.work / f"nncf-{preset or 'default'}" / "model.xml", ctx.calib,
                                transformer=ctx.transformer, preset=preset)
        q = ctx.scorer(xml, "openvino", "int8")
        return Int8Candidate("openvino-nncf", xml, "openvino", q, [], ctx.passes(q), time.perf_counter() - t, 1,
                             recipe=NncfIr(preset))

    return build


def _dynamic(ctx: LadderContext) -> Int8Candidate:
    """INT8 weights, activations quantized per group at run time: activation groups from large
    (fast) to small (accurate), the first that passes, else the closest."""
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    t = time.perf_counter()
    ctx.log("OpenVINO dynamic INT8: INT8 weights, activations quantized per group at run time")
    model, best = ovq.compress_int8(ctx.fp32_xml), None
    for i, group in enumerate(ovq.DYNAMIC_GROUPS):
        xml = ovq.save_dynamic(model, ctx.work / f"dynamic-{group}" / "model.xml", group)
        q = ctx.scorer(xml, "openvino", "int8")
        ctx.log(f"OpenVINO dynamic INT8, activation groups of {group}: {describe_score(q)}")
        cand = Int8Candidate("openvino-dynamic", xml, "openvino", q, [], ctx.passes(q), time.perf_counter() - t,
                             i + 1, recipe=OpenvinoDynamic(group))
        if best is None or cand.passed or q.drop < best.quality.drop:
            best = cand
        if cand.passed:
            break
    return best


def _weights(ctx: LadderContext) -> Int8Candidate:
    """Embedding tables and other weights compressed in their own modes (openvino_nncf.compress_tables)."""
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    t = time.perf_counter()
    ctx.log(f"OpenVINO weight compression: embedding tables {ovq.TABLE_MODE}, other weights {ovq.OTHER_MODE}")
    xml = ovq.save(ovq.compress_tables(ctx.fp32_xml), ctx.work / "weights" / "model.xml")
    q = ctx.scorer(xml, "openvino", "int8")
    return Int8Candidate("openvino-weights", xml, "openvino", q, [], ctx.passes(q), time.perf_counter() - t, 1,
                         recipe=OpenvinoWeights(ovq.TABLE_MODE, ovq.OTHER_MODE))


def _has_qdq(ctx: LadderContext, done) -> bool:
    return ctx.static_qdq is not None


FROM_QDQ = Rung("openvino-qdq", "openvino", build=_from_qdq, applies=_has_qdq)
# transformers: NNCF's "performance" preset (symmetric activations, faster) before its transformer
# default "mixed" (openvino_nncf.TRANSFORMER_PRESETS); other models: NNCF's default
NNCF_PERFORMANCE = Rung("openvino-nncf", "openvino", build=_nncf("performance"), applies=always)
NNCF_MIXED = Rung("openvino-nncf", "openvino", build=_nncf("mixed"), applies=always)
NNCF_DEFAULT = Rung("openvino-nncf", "openvino", build=_nncf(None), applies=always)
DYNAMIC = Rung("openvino-dynamic", "openvino", build=_dynamic, applies=always)
WEIGHTS = Rung("openvino-weights", "openvino", build=_weights, applies=always)


def openvino_ladder(ctx: LadderContext) -> list[Rung]:
    """OpenVINO's rungs in the order they are tried.

    Transformers (climbed until one passes): the preferred static way first: NNCF on the IR when
    the IR has fused attention (the QDQ graph spells attention out and runs slower) or when there
    is no QDQ model, else the QDQ conversion (NNCF on an unfused IR measured no faster); dynamic
    INT8 next (slower than static, much closer to FP32); the other static way last. Without the
    user's calibration data dynamic INT8 goes first: it needs none, and static INT8 calibrated on
    generic titles lost the min-cosine target on real ones.
    Other models: the QDQ conversion and NNCF both, the fastest kept (NNCF placed quantizers
    better for a CNN); with embedding tables, weight compression too, and the smallest kept
    (openvino_int8)."""
    if not ctx.transformer:
        return [FROM_QDQ, NNCF_DEFAULT, *([WEIGHTS] if ctx.tables else [])]
    nncf, qdq = [NNCF_PERFORMANCE, NNCF_MIXED], [FROM_QDQ] if ctx.static_qdq is not None else []
    preferred, other = (nncf, qdq) if ctx.fused_attention or not qdq else (qdq, nncf)
    if not ctx.user_calibration:
        return [DYNAMIC, *preferred, *other]
    return [*preferred, DYNAMIC, *other]


def openvino_int8(ctx: LadderContext) -> tuple[Int8Candidate | None, list[Int8Candidate]]:
    """(the kept candidate, moved to stage/openvino/model.int8.xml, or None; the candidates for the
    manifest: the kept one, with every rung tried as its ``variants``, or all those tried). On a
    CPU without an INT8 dot-product instruction a transformer's first NNCF rung is timed on a cheap
    probe before anything is calibrated fully (_slow_probe): there, no rung was faster than FP32."""
    rungs = openvino_ladder(ctx)
    if ctx.transformer and ctx.cfg.speed_check and rungs[0] is NNCF_PERFORMANCE and not int8_dot_product():
        probe = _slow_probe(ctx)
        if probe is not None:  # the other rungs are slower still there
            ctx.log(f"no OpenVINO INT8: {probe.rejected}; OpenVINO keeps FP32")
            return None, [probe]
    tried = climb(rungs, ctx, stop_at_first_pass=ctx.transformer)
    best = keep_fastest(tried, ctx, fp32=ctx.fp32_xml)
    if best is not None and ctx.tables and not ctx.transformer:
        # tables are most of the bytes and a lookup is cheap at any precision: of the candidates
        # that passed the gate (and the speed check), the smallest on disk
        from edgeopt.optimize.quantize.embeddings import artifact_bytes

        best = min((c for c in tried if c.passed and not c.rejected), key=lambda c: artifact_bytes(c.path))
    if best is None:
        slow = any(c.rejected for c in tried)
        ctx.log(f"no OpenVINO INT8 variant {'faster than FP32' if slow else 'passed the gate'}; OpenVINO keeps FP32")
        return None, tried
    final = ctx.stage / "openvino" / "model.int8.xml"
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(best.path, final)
    shutil.move(best.path.with_suffix(".bin"), final.with_suffix(".bin"))
    best.path = final
    best.variants = [c.to_json() for c in tried]
    return best, [best]

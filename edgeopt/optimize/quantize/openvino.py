"""OpenVINO INT8: NNCF post-training quantization of the FP32 IR, the QDQ ONNX read by OpenVINO, or
INT8 weights with activations quantized at run time (dynamic)."""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.dataset import Dataset


def from_qdq(qdq_onnx: Path, xml: Path) -> Path:
    """OpenVINO executes QDQ graphs with its INT8 kernels: convert the gated QDQ ONNX as it is."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(qdq_onnx)), str(xml), compress_to_fp16=False)
    return xml


# NNCF presets for transformers, tried in this order: "performance" (symmetric activations) ran
# MiniLM's static [1, 64] INT8 IR at 0.89x the latency of NNCF's transformer default "mixed"
# (asymmetric activations where they help), cosine 0.9973 / min 0.9937 vs 0.9978 / 0.9935 on
# held-out titles (Xeon with AMX, docs/PERFORMANCE.md); "mixed" is the fallback when it fails the gate.
TRANSFORMER_PRESETS = ("performance", "mixed")


def nncf_quantize(fp32_xml: Path, xml: Path, calib: Dataset, *, transformer: bool,
                  ignored: list[str] = (), preset: str | None = None, bias_correction: bool = True) -> Path:
    """nncf.quantize with the transformer model type for text models, ignoring ``ignored`` node
    names; ``preset`` ("performance": symmetric activations, "mixed") overrides NNCF's default
    (mixed for transformers, performance otherwise). ``bias_correction`` False skips NNCF's bias
    correction: the same graph with uncorrected biases, which runs at the same speed, for timing
    only (MiniLM: 36 FakeQuantize either way; NNCF took 7.5 instead of 8.3-10.2 s on 8 samples)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    names = [p.get_any_name() for p in model.inputs]
    dataset = nncf.Dataset(list(calib.samples), lambda s: {n: s[n] for n in names})
    kwargs = {"subset_size": len(calib)}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if preset is not None:
        kwargs["preset"] = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                            "mixed": nncf.QuantizationPreset.MIXED}[preset]
    if not bias_correction:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(disable_bias_correction=True)
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(ignored), validate=False)
    from edgeopt.optimize.quantize.ort import quiet_root_logger

    with quiet_root_logger():
        quantized = nncf.quantize(model, dataset, **kwargs)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return xml


# Dynamic INT8 for OpenVINO: INT8 weights (nncf.compress_weights) and activations quantized per group
# of input channels at run time by the CPU plugin, asked for in the IR itself (rt_info
# runtime_options), so every OpenVINO runtime that loads the file applies it. No calibration data,
# so nothing to mismatch. MiniLM on Myntra titles (docs/PERFORMANCE.md): group 128 gave cosine
# 0.9988 / min 0.9976 at ~1.15x the latency of static NNCF INT8; NNCF calibrated on edgeopt's
# built-in titles gave 0.9947 / 0.9719 on the same titles. With INFERENCE_PRECISION_HINT=f32 the
# plugin skips it (measured: FP32 speed), which edgeopt's runtime never sets for INT8.
DYNAMIC_GROUPS = (128, 64, 32)  # tried in this order: larger groups run faster, smaller are more accurate


def compress_int8(fp32_xml: Path):
    """The FP32 IR with symmetric per-channel INT8 weights (an ov.Model, not saved)."""
    import nncf
    import openvino as ov

    from edgeopt.optimize.quantize.ort import quiet_root_logger

    with quiet_root_logger():
        return nncf.compress_weights(ov.Core().read_model(str(fp32_xml)), mode=nncf.CompressWeightsMode.INT8_SYM)


def save_dynamic(model, xml: Path, group_size: int) -> Path:
    """Save ``model`` (from compress_int8) asking for run-time activation quantization per group."""
    import openvino as ov

    model.set_rt_info(str(group_size), ["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def _quiet_nncf_quantize(*args, **kwargs) -> None:
    """nncf_quantize with stdout and stderr (file descriptors too) sent to /dev/null: its progress
    bars would cut into the parent's terminal."""
    import os
    import sys

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    nncf_quantize(*args, **kwargs)


class InBackground:
    """``nncf_quantize(fp32_xml, xml, calib, **kwargs)`` in a process of its own, so that its
    calibration runs while this one does other work (a 2-core machine has a core to spare while
    onnxruntime's quantizer, single-threaded Python, builds the next candidate). Spawned, not
    forked: the parent holds torch and thread pools. ``result()`` waits for it and runs it here,
    in the open, when the process failed; ``cancel()`` ends it."""

    def __init__(self, fp32_xml: Path, xml: Path, calib: Dataset, **kwargs):
        import multiprocessing

        self.args, self.kwargs, self.xml = (fp32_xml, xml, calib), kwargs, xml
        xml.parent.mkdir(parents=True, exist_ok=True)
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_quiet_nncf_quantize, args=self.args, kwargs=kwargs, daemon=True)
        self.proc.start()

    def result(self) -> Path:
        self.proc.join()
        if self.proc.exitcode == 0 and self.xml.exists() and self.xml.with_suffix(".bin").exists():
            return self.xml
        return nncf_quantize(*self.args, **self.kwargs)

    def cancel(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join()

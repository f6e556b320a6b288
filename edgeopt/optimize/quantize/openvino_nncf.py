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
    only (MiniLM: 36 FakeQuantize either way; NNCF took 7.5-8.6 instead of 8.3-10.2 s on 8 samples)."""
    import nncf
    import openvino as ov

    from edgeopt.runtime.openvino import port_name

    model = ov.Core().read_model(str(fp32_xml))
    names = [port_name(p, f"input{i}") for i, p in enumerate(model.inputs)]
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


# Weight compression for embedding-heavy models (CTR rankers: tables are most of the bytes). The
# tables (Gather constants) in 4 bits, asymmetric, one scale and zero point per row, then every
# other weight (the MLP's MatMuls) in 8 bits, asymmetric; activations stay FP32. On the DeepFM-style
# ranker of benchmarks/int8_ctr.py (5,000 x 16 + 5,000 x 1 tables): 0.280x the FP32 IR at an AUC
# drop of 0.0005, where the QDQ route read 0.372x (its .xml spells every FakeQuantize out) and INT8
# weights everywhere 0.352x (a per-row scale for each 1-wide row). Symmetric INT4 tables dropped the
# AUC by 0.0045 there, past the 0.003 gate. The accuracy gate judges each model's result.
TABLE_MODE, OTHER_MODE = "int4_asym", "int8_asym"


def compress_tables(fp32_xml: Path):
    """The FP32 IR with its embedding tables in TABLE_MODE per row and its other weights in
    OTHER_MODE per channel (an ov.Model, not saved)."""
    import nncf
    import openvino as ov

    from edgeopt.optimize.quantize.ort import quiet_root_logger

    mode = nncf.CompressWeightsMode
    with quiet_root_logger():
        model = nncf.compress_weights(ov.Core().read_model(str(fp32_xml)), mode=mode(TABLE_MODE), group_size=-1,
                                      ratio=1.0, all_layers=True,
                                      ignored_scope=nncf.IgnoredScope(types=["MatMul", "Convolution"], validate=False))
        return nncf.compress_weights(model, mode=mode(OTHER_MODE))


def save(model, xml: Path) -> Path:
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def save_dynamic(model, xml: Path, group_size: int) -> Path:
    """Save ``model`` (from compress_int8) asking for run-time activation quantization per group."""
    import openvino as ov

    model.set_rt_info(str(group_size), ["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


class InBackground:
    """``nncf_quantize(fp32_xml, xml, calib, **kwargs)`` in a process of its own, so that its
    calibration runs while this one does other work (a 2-core machine has a core to spare while
    onnxruntime's quantizer, single-threaded Python, builds the next candidate). A fresh
    interpreter (``python -m edgeopt.optimize.quantize.openvino_nncf``), not a fork of this one, which
    holds torch and thread pools, and not multiprocessing's spawn, which would re-run a user's
    script that calls the API without a ``__main__`` guard. Its output goes to /dev/null (NNCF's
    progress bars would cut into this terminal). ``result()`` waits for it and runs it here, in
    the open, when the process failed; ``cancel()`` ends it."""

    def __init__(self, fp32_xml: Path, xml: Path, calib: Dataset, **kwargs):
        import json
        import subprocess
        import sys

        import numpy as np

        self.args, self.kwargs, self.xml = (fp32_xml, xml, calib), kwargs, xml
        xml.parent.mkdir(parents=True, exist_ok=True)
        samples = xml.with_name("calibration.npz")
        np.savez(samples, **{f"{i}/{name}": a for i, s in enumerate(calib.samples) for name, a in s.items()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(fp32_xml), str(xml), str(samples), json.dumps(kwargs)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def result(self) -> Path:
        if self.proc.wait() == 0 and self.xml.exists() and self.xml.with_suffix(".bin").exists():
            return self.xml
        return nncf_quantize(*self.args, **self.kwargs)

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _main(fp32_xml: str, xml: str, samples_npz: str, kwargs: str) -> None:
    """InBackground's child: the samples from their .npz (keys ``i/name``), then nncf_quantize."""
    import json

    import numpy as np

    with np.load(samples_npz) as z:
        samples: dict[int, dict] = {}
        for key in z.files:
            i, name = key.split("/", 1)
            samples.setdefault(int(i), {})[name] = z[key]
    calib = Dataset([samples[i] for i in sorted(samples)], source=samples_npz)
    nncf_quantize(Path(fp32_xml), Path(xml), calib, **json.loads(kwargs))


if __name__ == "__main__":
    import sys

    _main(*sys.argv[1:5])

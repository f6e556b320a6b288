"""OpenVINO INT8: NNCF post-training quantization of the FP32 IR, or the QDQ ONNX read by OpenVINO."""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.dataset import Dataset


def from_qdq(qdq_onnx: Path, xml: Path) -> Path:
    """OpenVINO executes QDQ graphs with its INT8 kernels: convert the gated QDQ ONNX as it is."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(qdq_onnx)), str(xml), compress_to_fp16=False)
    return xml


def nncf_quantize(fp32_xml: Path, xml: Path, calib: Dataset, *, transformer: bool,
                  ignored: list[str] = ()) -> Path:
    """nncf.quantize with the transformer preset for text models, ignoring ``ignored`` node names."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    names = [p.get_any_name() for p in model.inputs]
    dataset = nncf.Dataset(list(calib.samples), lambda s: {n: s[n] for n in names})
    kwargs = {"subset_size": len(calib)}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(ignored), validate=False)
    from edgeopt.optimize.quantize.ort import quiet_root_logger

    with quiet_root_logger():
        quantized = nncf.quantize(model, dataset, **kwargs)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return xml

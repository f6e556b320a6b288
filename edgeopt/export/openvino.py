"""ONNX -> OpenVINO IR (model.xml + model.bin), FP32 or with FP16-compressed weights."""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import UnavailableError


def export_openvino(onnx_path: Path, xml_path: Path, *, fp16: bool = False) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise UnavailableError("OpenVINO export needs: pip install 'edgeopt[openvino]'") from None
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    # save_model compresses to FP16 unless told otherwise; FP32 must stay FP32.
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)

"""OpenVINO IR (model.xml + model.bin), FP32 or with FP16-compressed weights.

Two converters. Transformers go through OpenVINO's PyTorch frontend when their source is a torch
module: it keeps ``scaled_dot_product_attention`` as one ScaledDotProductAttention op, which the
CPU plugin runs as a fused kernel, where the ONNX graph spells attention out as MatMul, Softmax,
Where/IsNaN and transposes (MiniLM: FP32 and INT8 ~10 % faster, docs/PERFORMANCE.md). Everything
else, and any model the frontend cannot take, is converted from the verified model.onnx.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from edgeopt.errors import UnavailableError
from edgeopt.models.base import LoadedModel

TORCH_FRONTEND_FAMILIES = ("hf", "sentence-transformers")


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise UnavailableError("OpenVINO export needs: pip install 'edgeopt[openvino]'") from None
    return ov


def from_torch(model: LoadedModel):
    """The torch module through OpenVINO's PyTorch frontend, with every dimension dynamic and the
    inputs and outputs named as in model.onnx; None when the frontend cannot convert it."""
    ov = _ov()
    import torch

    feeds = model.sample_feeds()[0]
    example = tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in model.io.inputs)
    shapes = [ov.PartialShape([-1] * feeds[s.name].ndim) for s in model.io.inputs]
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), \
                torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings; the verification below is what counts
            converted = ov.convert_model(model.module, example_input=example, input=shapes)
    except Exception:  # noqa: BLE001 - the frontend fails in many ways; the ONNX route still works
        return None
    if len(converted.inputs) != len(model.io.inputs) or len(converted.outputs) != len(model.io.outputs):
        return None
    for port, spec in zip(converted.inputs, model.io.inputs):
        port.get_tensor().set_names({spec.name})
    for port, spec in zip(converted.outputs, model.io.outputs):
        port.get_tensor().set_names({spec.name})
    return converted


def has_fused_attention(xml: Path) -> bool:
    ov = _ov()
    return any(op.get_type_name() == "ScaledDotProductAttention" for op in ov.Core().read_model(str(xml)).get_ops())


def export_openvino(onnx_path: Path, xml_path: Path, *, fp16: bool = False, converted=None) -> str:
    """Write the IR; ``converted`` is a model from :func:`from_torch`, else model.onnx is converted.
    Returns the converter used: 'pytorch-frontend' or 'onnx'."""
    ov = _ov()
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = converted if converted is not None else ov.convert_model(str(onnx_path))
    # save_model compresses to FP16 unless told otherwise; FP32 must stay FP32.
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return "onnx" if converted is None else "pytorch-frontend"

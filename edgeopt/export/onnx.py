"""torch -> ONNX with torch.onnx; keyword-forward models go through ExportAdapter (models/adapter.py).

The TorchScript-based exporter is fast and handles traced Hugging Face models; torch.export
programs (.pt2) go through the dynamo exporter. If the first exporter fails, the other is tried,
and both errors are reported when neither works.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel

OPSET = 17
DYNAMO_OPSET = 18


def _example_args(model: LoadedModel):
    import torch

    feeds = model.sample_feeds()[0]
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in model.io.inputs)


def _torchscript_export(model: LoadedModel, path: Path) -> None:
    import torch

    dynamic_axes = {s.name: s.dynamic_axes for s in (*model.io.inputs, *model.io.outputs) if s.dynamic_axes}
    module = model.metadata.get("export_module", model.module)
    torch.onnx.export(module, _example_args(model), str(path), dynamo=False, opset_version=OPSET,
                      input_names=model.io.input_names, output_names=model.io.output_names,
                      dynamic_axes=dynamic_axes, do_constant_folding=True)


def _dynamo_export(model: LoadedModel, path: Path) -> None:
    import torch

    target = model.metadata.get("exported_program")
    kwargs = {}
    if target is None:
        target = model.module
        dims = {}
        shapes = []
        for s in model.io.inputs:
            shapes.append({i: dims.setdefault(name, torch.export.Dim(name, min=1)) for i, name in s.dynamic_axes.items()})
        kwargs["dynamic_shapes"] = tuple(shapes)
    program = torch.onnx.export(target, _example_args(model), dynamo=True, opset_version=DYNAMO_OPSET,
                                input_names=model.io.input_names, output_names=model.io.output_names,
                                optimize=True, **kwargs)
    program.save(str(path), external_data=False)


def export_onnx(model: LoadedModel, path: Path, *, exporter: str = "auto") -> str:
    """Write ``path``; returns the exporter that worked ('torchscript' or 'dynamo')."""
    import onnx

    order = {"auto": ["dynamo", "torchscript"] if model.family == "pt2" else ["torchscript", "dynamo"],
             "dynamo": ["dynamo"], "torchscript": ["torchscript"]}[exporter]
    errors = []
    for name in order:
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                (_dynamo_export if name == "dynamo" else _torchscript_export)(model, path)
            onnx.checker.check_model(str(path))
            return name
        except Exception as e:  # exporter failures are diverse; report them together below
            errors.append(f"{name}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}")
            path.unlink(missing_ok=True)
    raise UsageError(f"torch.onnx could not export {model.name} ({'; '.join(errors)}); "
                     "simplify the forward or pass a torch.export .pt2")


def output_specs(path: Path, model: LoadedModel):
    """Output specs for the manifest: the ONNX file's dims where they are sizes or input axis names
    (batch, sequence), the source model's where the exporter invented a name."""
    from edgeopt.models.onnx_file import onnx_io
    from edgeopt.spec import TensorSpec

    axis_names = {d for s in model.io.inputs for d in s.shape if isinstance(d, str)}
    known = {s.name: s for s in model.io.outputs}
    specs = []
    for spec in onnx_io(path).outputs:
        src = known.get(spec.name)
        shape = tuple(d if isinstance(d, int) or d in axis_names or src is None or len(src.shape) != len(spec.shape)
                      else src.shape[i] for i, d in enumerate(spec.shape))
        specs.append(TensorSpec(spec.name, spec.dtype, shape))
    return specs

"""torch -> ONNX with torch.onnx; keyword-forward models go through ExportAdapter (models/adapter.py).

The TorchScript-based exporter is fast and handles traced Hugging Face models; torch.export
programs (.pt2) go through the dynamo exporter. If the first exporter fails, the other is tried,
and both errors are reported when neither works.

Hugging Face transformers are traced with their *eager* attention (:func:`eager_attention`):
transformers' default (sdpa) traces to a larger graph (MiniLM: 689 nodes against 536) that
onnxruntime runs slower (FP32, 2 threads: 1.06-1.16x at 64 tokens, 1.04-1.05x on a title) and
that its transformer optimizer cannot fuse (export/ort_fused.py), so the INT8 step would have to
export the model a second time. Both compute the same function; model.onnx is verified against
the source either way.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError, first_line
from edgeopt.models.base import LoadedModel
from edgeopt.models.hf_layers import pretrained

OPSET = 17
DYNAMO_OPSET = 18


def _example_args(model: LoadedModel):
    import torch

    feeds = model.sample_feeds()[0]
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in model.io.inputs)


HF_FAMILIES = ("hf", "sentence-transformers")


@contextmanager
def eager_attention(module):
    """Switch the transformers model inside ``module`` to eager attention for the duration; yields
    whether it runs eager attention now (False: not a transformer, or it cannot switch)."""
    hf_model = pretrained(module) if module is not None else None
    before = getattr(getattr(hf_model, "config", None), "_attn_implementation", None)
    if hf_model is None or not hasattr(hf_model, "set_attn_implementation"):
        yield False
        return
    try:
        hf_model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - a model that cannot switch is exported as it is
        yield False
        return
    try:
        yield True
    finally:
        if before is not None and before != "eager":
            hf_model.set_attn_implementation(before)


def torchscript_export(model: LoadedModel, f) -> None:
    """torch.onnx's TorchScript-based export of ``model`` to ``f`` (a path or a binary file)."""
    import torch

    dynamic_axes = {s.name: s.dynamic_axes for s in (*model.io.inputs, *model.io.outputs) if s.dynamic_axes}
    module = model.metadata.get("export_module", model.module)
    torch.onnx.export(module, _example_args(model), f if hasattr(f, "write") else str(f), dynamo=False,
                      opset_version=OPSET, input_names=model.io.input_names, output_names=model.io.output_names,
                      dynamic_axes=dynamic_axes, do_constant_folding=True)


def _torchscript_export(model: LoadedModel, path: Path) -> dict:
    """{"attention": "eager"} when a Hugging Face transformer was traced with eager attention."""
    if model.family in HF_FAMILIES and "export_module" not in model.metadata:
        with eager_attention(model.module) as eager:
            if eager:
                try:
                    torchscript_export(model, path)
                    return {"attention": "eager"}
                except Exception:  # noqa: BLE001 - try its default attention before giving up on TorchScript
                    path.unlink(missing_ok=True)
    torchscript_export(model, path)
    return {}


def _dynamo_export(model: LoadedModel, path: Path) -> dict:
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
    return {}


def export_onnx(model: LoadedModel, path: Path, *, exporter: str = "auto") -> dict:
    """Write ``path``; returns {"exporter": the one that worked ('torchscript' or 'dynamo')}, with
    "attention": "eager" when a transformer was traced with eager attention."""
    import onnx

    order = {"auto": ["dynamo", "torchscript"] if model.family == "pt2" else ["torchscript", "dynamo"],
             "dynamo": ["dynamo"], "torchscript": ["torchscript"]}[exporter]
    errors = []
    for name in order:
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                how = (_dynamo_export if name == "dynamo" else _torchscript_export)(model, path)
            onnx.checker.check_model(str(path))
            return {"exporter": name, **how}
        except Exception as e:  # exporter failures are diverse; report them together below
            errors.append(f"{name}: {first_line(e)}")
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

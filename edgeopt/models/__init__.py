"""Load every model form of DESIGN.md into a ``LoadedModel``; bad input becomes a UsageError."""

from __future__ import annotations

import os
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.models.base import Feeds, LoadedModel
from edgeopt.spec import TensorSpec

FORMATS_HELP = ("a folder with config.json or modules.json, .pt2, TorchScript .pt/.ts, "
                ".pt/.pth/.safetensors state dict with --arch, or .onnx")


def load_model(path: str | os.PathLike, *, arch: str | None = None, arch_kwargs: dict | str | None = None,
               trust_pickle: bool = False, inputs: list[TensorSpec | str] | None = None,
               rows: str | os.PathLike | None = None) -> LoadedModel:
    """``arch_kwargs`` and ``inputs`` as the CLI gives them (JSON, NAME:SHAPE:DTYPE) or parsed: every
    command's Python API, and so a recipe, takes either. ``rows``: the user's labelled data (an
    .npz keyed by input name): a PyTorch model's input check runs on its first rows."""
    from edgeopt.models import torch_files as tf
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.spec import parse_input

    if isinstance(arch_kwargs, str):
        arch_kwargs = parse_kwargs(arch_kwargs)
    inputs = [parse_input(s) if isinstance(s, str) else s for s in inputs] if inputs else None

    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such model file or folder: {p}")
    if p.is_dir():
        if (p / "modules.json").is_file():
            from edgeopt.models.hf import load_sentence_transformers

            return load_sentence_transformers(p, inputs)
        if (p / "config.json").is_file():
            from edgeopt.models.hf import load_hf

            return load_hf(p, inputs)
        if (p / "model.pt2").is_file():  # output of distill / prune / update
            from edgeopt.models.pt2_folder import load_pt2_folder

            return load_pt2_folder(p, inputs, arch=arch, arch_kwargs=arch_kwargs, rows=rows)
        raise UsageError(f"{p} is a folder without config.json or modules.json; expected {FORMATS_HELP}")
    if p.stat().st_size == 0:
        raise UsageError(f"{p.name} is empty; check the file")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from edgeopt.models.onnx_file import load_onnx

        return load_onnx(p, inputs)
    if suffix == ".safetensors":
        return tf.load_state_dict_model(p, arch, arch_kwargs or {}, inputs, rows)
    if suffix not in (".pt2", ".pt", ".pth", ".ts", ".bin", ".ckpt"):
        raise UsageError(f"unknown model format {suffix or p.name!r}; expected {FORMATS_HELP}")
    kind = tf.zip_kind(p)
    if kind == "pt2":
        return tf.load_pt2(p, inputs, rows)
    if suffix == ".pt2":
        raise UsageError(f"{p.name} is not a torch.export archive (truncated or corrupt?); re-save it with torch.export.save")
    if kind == "torchscript":
        return tf.load_torchscript(p, inputs, rows)
    if trust_pickle:
        try:
            tf.read_state_dict(p)
        except UsageError:
            return tf.load_pickled_module(p, inputs, rows)
    return tf.load_state_dict_model(p, arch, arch_kwargs or {}, inputs, rows)


__all__ = ["Feeds", "LoadedModel", "load_model"]

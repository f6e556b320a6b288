"""Students: a user's own model (``--student``), or the teacher with evenly spaced layers kept
(``--student-layers N``), the initialisation of sentence-transformers' and DistilBERT's recipes."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel

LAYER_FAMILIES = ("hf", "sentence-transformers")


def pick_layers(depth: int, keep: int) -> list[int]:
    """Evenly spaced layer indices, first and last included (6 -> 3: [0, 2, 5])."""
    if keep == 1:
        return [depth - 1]
    return sorted({round(i * (depth - 1) / (keep - 1)) for i in range(keep)})


def _transformer(model: LoadedModel):
    """The transformers model inside a Hugging Face / sentence-transformers LoadedModel."""
    import torch

    root = model.metadata["sentence_transformer"] if model.family == "sentence-transformers" else model.module.inner
    for module in root.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "num_hidden_layers", None) and isinstance(module, torch.nn.Module):
            return root, module
    return root, None


def encoder_layers(hf_model):
    """(parent module, attribute name, ModuleList) of a BERT-like encoder's layer stack."""
    import torch

    depth = hf_model.config.num_hidden_layers
    for name, module in hf_model.named_modules():
        for attr in ("layer", "layers"):
            stack = getattr(module, attr, None)
            if isinstance(stack, torch.nn.ModuleList) and len(stack) == depth:
                return module, attr, stack
    return None


def teacher_depth(model: LoadedModel) -> int | None:
    """How many encoder layers the teacher has, or None when layers cannot be dropped."""
    if model.family not in LAYER_FAMILIES:
        return None
    _, hf_model = _transformer(model)
    if hf_model is None or encoder_layers(hf_model) is None:
        return None
    return int(hf_model.config.num_hidden_layers)


def check_layers(model: LoadedModel, keep: int) -> int:
    depth = teacher_depth(model)
    if depth is None:
        raise UsageError(f"--student-layers needs a transformer teacher (a Hugging Face or sentence-transformers "
                         f"folder with an encoder layer stack); {model.name} is {model.family}: pass --student")
    if not 1 <= keep < depth:
        raise UsageError(f"--student-layers {keep} is out of range: {model.name} has {depth} layers; "
                         f"choose 1 to {depth - 1}")
    return depth


def save_layer_dropped(model: LoadedModel, keep: int, folder: Path) -> list[int]:
    """Write a copy of the teacher with ``keep`` evenly spaced encoder layers to ``folder`` in the
    teacher's own format (a sentence-transformers or Hugging Face folder); returns the kept layers."""
    import torch

    depth = check_layers(model, keep)
    root, hf_model = _transformer(model)
    layers = pick_layers(depth, keep)
    original = encoder_layers(hf_model)
    parent, attr, stack = original
    # deepcopy the whole model with only the kept layers attached, so the teacher is never altered
    setattr(parent, attr, torch.nn.ModuleList([stack[i] for i in layers]))
    hf_model.config.num_hidden_layers = len(layers)
    try:
        student = copy.deepcopy(root)
    finally:
        setattr(parent, attr, stack)
        hf_model.config.num_hidden_layers = depth
    if model.family == "sentence-transformers":
        student.save(str(folder))
    else:
        student.save_pretrained(str(folder))
        model.tokenizer.save_pretrained(str(folder))
    return layers


def layer_dropped(model: LoadedModel, keep: int, workdir: str | Path | None = None) -> tuple[LoadedModel, list[int]]:
    """The layer-dropped student, loaded back through ``load_model`` like any user folder."""
    from edgeopt.models import load_model

    folder = Path(tempfile.mkdtemp(prefix=f"student-{keep}-", dir=workdir))
    layers = save_layer_dropped(model, keep, folder)
    student = load_model(folder)
    student.metadata["kept_layers"] = layers
    return student, layers

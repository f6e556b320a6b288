"""What a training command writes and checks about OUT: the trained model in its input's family (a
sentence-transformers or Hugging Face folder stays one; any other model becomes OUT/model.pt2 +
model.json, which load_model and so `edgeopt export` read back), its size, and class names."""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.models.trainable import user_module
from edgeopt.train.report import REPORT


def check_out(out: Path, command: str) -> None:
    """OUT may be new, empty or an earlier output of ``command`` (it has a report.json); nothing else
    is overwritten."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).exists())):
        raise UsageError(f"-o {out} exists and is not an earlier {command} output; choose another folder or empty it")


def class_names(data) -> list[str] | None:
    """The class folder names of an image-folder dataset (sorted, as their labels are numbered)."""
    p = Path(str(data)) if data else None
    if p is not None and p.is_dir():
        return sorted(d.name for d in p.iterdir() if d.is_dir()) or None
    return None


def save_model(model: LoadedModel, folder: Path, *, task: str, example: dict, class_names=None,
               state_dict: bool = False) -> None:
    """Write the trained model so that load_model reads it as the kind it was loaded from.
    ``state_dict``: also its weights alone (model.state.pt), so that a command needing the module's
    code (prune, update) can rebuild it with ``--arch`` when the architecture is unchanged."""
    import torch

    from edgeopt.models.pt2_folder import write_pt2_folder
    from edgeopt.train.batches import tensors

    if model.family == "sentence-transformers":
        user_module(model).save(str(folder))
        return
    if model.family == "hf":
        inner = user_module(model)
        if class_names and getattr(inner.config, "num_labels", None) == len(class_names):
            inner.config.id2label = dict(enumerate(class_names))
            inner.config.label2id = {c: i for i, c in enumerate(class_names)}
        inner.save_pretrained(str(folder))
        model.tokenizer.save_pretrained(str(folder))
        return
    args = tuple(tensors(example, model.io.input_names))
    with torch.no_grad():
        write_pt2_folder(folder, model.module, args, model.io.inputs, task=task, class_names=class_names,
                         tokenizer=model.tokenizer, max_length=model.max_length,
                         max_batch=model.metadata.get("max_batch"))
        if state_dict:
            from edgeopt.models.pt2_folder import STATE

            torch.save(user_module(model).state_dict(), folder / STATE)


def parameters(model: LoadedModel) -> int:
    return int(sum(p.numel() for p in model.module.parameters()))


def disk_bytes(path: Path) -> int:
    """A file's size, or a folder's without its report.json."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != REPORT)

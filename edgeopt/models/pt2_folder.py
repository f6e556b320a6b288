"""A folder holding ``model.pt2`` (what distill / prune / update write for plain torch models).

``model.json`` beside it keeps what the archive cannot: the input names and named dynamic axes,
the task and class names, and the tokenizer folder of a text model, so ``edgeopt export OUT``
treats the folder like the model it came from.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.spec import TensorSpec

META = "model.json"
STATE = "model.state.pt"  # the weights alone, beside the program, when the module came from user code
DEFAULT_MAX_BATCH = 4096


def write_pt2_folder(folder: Path, module, example: tuple, inputs, *, task: str | None = None,
                     class_names: list[str] | None = None, tokenizer=None, max_length: int | None = None,
                     extra: dict | None = None, max_batch: int | None = None) -> Path:
    """torch.export ``module`` (positional inputs, dynamic batch axis) into folder/model.pt2 + model.json.
    ``max_batch``: the largest batch the source program allowed (a .pt2 saved with
    ``Dim("batch", max=1024)`` keeps 1024; exporting with more violates its constraints)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=max_batch or DEFAULT_MAX_BATCH)
    dynamic = tuple({i: (batch if d == "batch" else torch.export.Dim.AUTO)
                     for i, d in enumerate(spec.shape) if isinstance(d, str)} or None for spec in inputs)
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):  # forward(*args): one tuple of specs
        dynamic = (dynamic,)
    ep = torch.export.export(module, example, dynamic_shapes=dynamic)
    folder.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(folder / "model.pt2"))
    meta = {"inputs": [s.to_json() for s in inputs], "task": task, "class_names": class_names, **(extra or {})}
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder / "tokenizer"))
        meta.update(tokenizer="tokenizer/", max_length=max_length)
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return folder / "model.pt2"


def _renamed(reference, names):
    def run(feeds):
        return dict(zip(names, reference(feeds).values()))
    return run


def load_pt2_folder(folder: Path, inputs, *, arch: str | None = None, arch_kwargs: dict | None = None,
                    rows=None) -> LoadedModel:
    """The program in model.pt2; with ``arch`` and a model.state.pt beside it, the user's module
    built by ``arch`` with those weights instead (what prune and update need: the module's code)."""
    from edgeopt.models.base import model_name
    from edgeopt.models.torch_files import load_pt2, load_state_dict_model

    meta = {}
    if (folder / META).is_file():
        try:
            meta = json.loads((folder / META).read_text())
        except ValueError as e:
            raise UsageError(f"{folder / META} is not valid JSON ({e}); re-run the command that wrote it") from None
    recorded = [TensorSpec.from_json(s) for s in meta.get("inputs") or []]
    if arch and (folder / STATE).is_file():
        model = load_state_dict_model(folder / STATE, arch, arch_kwargs or {}, inputs or recorded or None, rows)
    else:
        model = load_pt2(folder / "model.pt2", inputs or recorded or None)
    model.name = model_name(folder)
    model.source = folder
    names = meta.get("output_names")
    if names and len(names) == len(model.io.outputs):  # e.g. sentence_embedding, as the source model named it
        from edgeopt.spec import IOSpec

        outputs = tuple(TensorSpec(n, o.dtype, o.shape) for n, o in zip(names, model.io.outputs))
        model.io = IOSpec(model.io.inputs, outputs)
        model.reference = _renamed(model.reference, names)
    if meta.get("task"):
        model.metadata["task"] = meta["task"]
    if meta.get("class_names"):
        model.metadata["class_names"] = meta["class_names"]
    if meta.get("tokenizer"):
        import transformers

        model.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder / meta["tokenizer"]))
        model.max_length = meta.get("max_length") or 128
    return model

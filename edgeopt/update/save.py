"""What update writes: the model in its input's family, with the id space it now has recorded."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class UpdateRecord:
    """How the model was updated, recorded in model.json (``update``) beside the model."""
    method: str
    metric: str
    forgetting: float | None


def save(loaded, module, folder: Path, *, task: str, example: dict, width: int, grew: dict,
         record: UpdateRecord) -> None:
    import torch

    from edgeopt.models.pt2_folder import write_pt2_folder
    from edgeopt.models.trainable import user_module
    from edgeopt.train.batches import tensors
    from edgeopt.train.write import save_model

    names = list(loaded.metadata.get("class_names") or [])
    if names and width > len(names):
        names += [str(i) for i in range(len(names), width)]  # new classes: their ids until the user names them
    if loaded.family in ("hf", "sentence-transformers"):
        inner = user_module(loaded)
        config = getattr(inner, "config", None)
        if config is not None and "output" in grew:
            config.num_labels = width  # also resets id2label / label2id to the new size
        save_model(loaded, folder, task=task, example=example, class_names=names or None)
        return
    id_space = {name: g["to"] for name, g in grew.items() if name != "output"}
    extra = {"update": asdict(record), "outputs": width, "id_space": id_space or None}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The tensor attributes")  # nn.GRU's flat weights, harmless
        write_pt2_folder(folder, module, tuple(tensors(example, loaded.io.input_names)), loaded.io.inputs, task=task,
                         class_names=names or None, tokenizer=loaded.tokenizer, max_length=loaded.max_length,
                         extra=extra, max_batch=loaded.metadata.get("max_batch"))

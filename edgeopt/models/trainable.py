"""Trainable access to a ``LoadedModel`` (distill, prune recovery and update train through this).

``LoadedModel.module`` is built for export: positional inputs in ``io.inputs`` order, a tuple out
in ``io.outputs`` order, eval mode. ``trainable`` hands back that same module with gradients on
and train mode set, so the training code calls a student exactly as export and verification will;
``user_module`` is the model as the user knows it (for saving in its own family).
"""

from __future__ import annotations

from edgeopt.models.base import LoadedModel


def user_module(model: LoadedModel):
    """The SentenceTransformer, the transformers model, or the user's nn.Module inside the adapter."""
    if model.family == "sentence-transformers":
        return model.metadata["sentence_transformer"]
    return getattr(model.module, "inner", model.module)


def set_mode(module, train: bool) -> None:
    """train()/eval(), except where torch.export graph modules refuse it (their mode was fixed at
    export: such a student trains with the batch-norm / dropout behaviour it was exported with)."""
    try:
        module.train(train)
    except (NotImplementedError, RuntimeError):
        pass


def trainable(model: LoadedModel):
    """The export-shaped module with every floating-point parameter trainable, in train mode."""
    if model.module is None:
        from edgeopt.errors import UsageError

        raise UsageError(f"{model.name} is {model.family}: it cannot be trained; give the PyTorch model")
    for p in model.module.parameters():
        if p.is_floating_point():
            p.requires_grad_(True)
    set_mode(model.module, True)
    return model.module

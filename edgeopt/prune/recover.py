"""Data for pruning: importance batches, held-out quality before / after, and recovery by
distillation from the unpruned model with the training core (``edgeopt.train.fit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError, first_line
from edgeopt.models.base import LoadedModel
from edgeopt.prune.report import Recovery


def example_args(model: LoadedModel, ds=None, n: int = 4) -> tuple:
    """A few real samples as positional tensors (the data's, else the model's own samples)."""
    from edgeopt.train.batches import collate, tensors

    if ds is not None:
        feeds = collate(ds, range(min(n, len(ds))))
    else:  # the largest batch: torch.export specializes a batch axis of 1
        feeds = max(model.sample_feeds(), key=lambda f: len(next(iter(f.values()))))
    return tuple(tensors(feeds, model.io.input_names))


def check_fits(model: LoadedModel, ds, task: str | None) -> None:
    """Data that does not fit the model is bad input: run one batch, and check label ranges."""
    import torch


    try:
        with torch.no_grad():
            model.module(*example_args(model, ds, 2))
    except Exception as e:
        raise UsageError(f"{ds.source} does not fit {model.name}: the model fails on it ({first_line(e)})") from None
    width = model.io.outputs[0].shape[-1] if model.io.outputs else None
    if task == "classify" and ds.labels is not None and isinstance(width, int):
        labels = np.asarray(ds.labels)
        if labels.min() < 0 or labels.max() >= width:
            raise UsageError(f"{ds.source}: labels reach {int(labels.max())}, but {model.name} has {width} classes; "
                             "the data does not fit the model")


def batches(model: LoadedModel, ds, n: int, batch: int = 16):
    """Up to n samples of ds as (positional args, labels tensor or None) batches."""
    import torch

    from edgeopt.train.batches import collate, tensors

    idx = np.arange(min(n, len(ds)))
    for start in range(0, len(idx), batch):
        part = idx[start:start + batch]
        labels = None if ds.labels is None else torch.from_numpy(np.asarray(ds.labels)[part])
        yield tuple(tensors(collate(ds, part), model.io.input_names)), labels


def taylor_loss(task: str | None):
    """The loss whose gradients rank channels: the task's own loss on the labels, or on the model's
    own predictions when there are none (cross-entropy to its argmax is not at its minimum, so it
    has gradients); for embedders / regressors the output's energy."""
    import torch.nn.functional as F

    def loss(out, labels):
        from edgeopt.train.batches import pooled

        y = pooled(out, {})
        if task == "classify" and y.ndim == 2 and y.shape[1] > 1:
            target = labels.long() if labels is not None else y.detach().argmax(1)
            return F.cross_entropy(y, target)
        if task == "binary":
            target = labels.float().reshape(-1) if labels is not None else (y.detach().reshape(-1) > 0).float()
            return F.binary_cross_entropy_with_logits(y.reshape(-1), target)
        return y.pow(2).sum(-1).mean()
    return loss


def outputs(model: LoadedModel, ds) -> np.ndarray:
    from edgeopt.train.outputs import outputs as run

    return run(model.module, ds, model.io.input_names)


def quality(task: str, reference: np.ndarray, out: np.ndarray, labels) -> dict:
    """The pruned model against the unpruned one (and the labels) in the task's metric."""
    from edgeopt.train.outputs import compare

    return compare(task, reference, out, labels).student


def before(task: str, reference: np.ndarray, labels) -> dict:
    from edgeopt.train.outputs import compare

    row = compare(task, reference, reference, labels).teacher or {}
    return row or {"reference": "the unpruned model"}


def ck_fingerprint(cfg, extra: dict | None) -> dict:
    """What a recovery checkpoint must match to be resumed: the training settings and what the caller
    adds (the pruned widths, the data size)."""
    from edgeopt.train.checkpoint import fingerprint

    return fingerprint(prune_recovery=True, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                       **(extra or {}))


def recover(pruned: LoadedModel, unpruned: LoadedModel, train, evald, *, task: str, epochs: int, batch_size: int,
            lr: float | None, seed: int, checkpoint_dir: Path, progress: bool, resume: bool = False,
            fingerprint: dict | None = None, log: Callable[[str], None] = lambda m: None) -> Recovery:
    """Distil the unpruned model into the pruned one on ``train`` (labels optional); early stopping
    on held-out ``evald``. Returns the training record."""
    import torch

    from edgeopt.models.trainable import trainable
    from edgeopt.train import TrainConfig, cached_outputs, fit, objectives
    from edgeopt.train.batches import augment as augment_inputs
    from edgeopt.train.batches import collate, pooled, tensors
    from edgeopt.train.outputs import lengths
    from edgeopt.train.outputs import outputs as module_outputs

    names = unpruned.io.input_names

    def teacher_run(idx):
        with torch.inference_mode():
            return pooled(unpruned.module(*tensors(collate(train, idx), names)),
                          dict(zip(names, tensors(collate(train, idx), names)))).float().numpy()

    log(f"caching the unpruned model's outputs on {len(train)} samples")
    t_train = cached_outputs(teacher_run, len(train), lengths=lengths(train))
    t_eval = outputs(unpruned, evald)
    text = pruned.family in ("hf", "sentence-transformers") or pruned.is_text
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr or (1e-4 if text else 1e-3), seed=seed,
                      checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, patience=max(2, epochs))
    labels = None if train.labels is None or task == "embed" else torch.from_numpy(np.asarray(train.labels))
    module = trainable(pruned)
    do_augment = task != "embed"

    def loss_fn(model, idx, gen):
        args = tensors(collate(train, idx), names)
        if do_augment:
            args = augment_inputs(args, names, gen, tokenizer=pruned.tokenizer)
        s = pooled(model(*args), dict(zip(names, args)))
        return objectives.loss(task, s, torch.from_numpy(t_train[idx]), None if labels is None else labels[idx])

    def evaluate(m):
        return objectives.score(task, module_outputs(m, evald, names), t_eval, evald.labels)

    from edgeopt.models.trainable import set_mode

    set_mode(module, False)
    start = evaluate(module)  # the pruned model before recovery: recovery must beat it to be kept
    kept = {k: v.detach().clone() for k, v in module.state_dict().items()}
    log(f"recovering by distillation from the unpruned model ({task}, {len(train)} samples, up to {epochs} epochs)")
    trained = fit(module, n_samples=len(train), loss_fn=loss_fn, evaluate=evaluate, cfg=cfg,
                  fingerprint=ck_fingerprint(cfg, fingerprint), lengths=lengths(train), log=log)
    note = None
    if trained.best_score is not None and trained.best_score < start["score"]:
        module.load_state_dict(kept)
        set_mode(module, False)
        note = "pruned weights: no recovery epoch scored better on the held-out data"
        log(note)
    return Recovery(lr=cfg.lr, batch_size=batch_size, score_before=start["score"], training=trained, kept=note)

"""Held-out data for the training commands: a share of the training data set apart (image folders
stay lazy), or the evaluation data given, capped to ``eval_size`` samples."""

from __future__ import annotations

import numpy as np

from edgeopt.errors import UsageError


def hold_out(ds, share: float, seed: int):
    """(training part, held-out part): Dataset.split, keeping images lazy (decoded when a batch
    needs them, not all at once); the same samples either way."""
    from dataclasses import replace

    from edgeopt.data.images import LazyImages

    if not isinstance(ds.samples, LazyImages):
        return ds.split(share, seed=seed)
    order = np.random.default_rng(seed).permutation(len(ds))
    k = max(1, int(round(len(ds) * share)))
    if len(ds) - k < 1:
        raise UsageError(f"{ds.source}: {len(ds)} samples are too few to hold some out; pass --eval")

    def take(idx):
        paths = [list.__getitem__(ds.samples, int(i)) for i in idx]
        return replace(ds, samples=LazyImages(paths, *ds.samples.args),
                       labels=None if ds.labels is None else ds.labels[idx])

    return take(order[k:]), take(order[:k])


def eval_split(ds, eval_ds, *, eval_size: int, seed: int, share: float = 0.1):
    """(training data, evaluation data): ``eval_ds`` when given, else ``share`` of ``ds`` held
    out; the evaluation part subsampled to at most ``eval_size`` samples."""
    if eval_ds is None:
        ds, eval_ds = hold_out(ds, share, seed)
    if len(eval_ds) > eval_size:
        eval_ds = eval_ds.subsample(eval_size, seed=seed)
    return ds, eval_ds

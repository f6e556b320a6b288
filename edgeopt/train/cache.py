"""Teacher outputs, computed once per run (split across torchrun's processes) and kept beside the
checkpoint, so neither later epochs nor a resumed run pay for the teacher again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.train import distributed


def cached_outputs(run: Callable[[np.ndarray], np.ndarray], n: int, *, batch: int = 64, path: Path | None = None,
                   lengths: np.ndarray | None = None) -> np.ndarray:
    """``run(indices) -> outputs`` over all n samples (first axis in sample order); with ``lengths``
    the samples run shortest first, so padded text batches waste little."""
    if path is not None and path.is_file():
        return np.load(path)
    rank, world = distributed.rank(), distributed.world_size()
    mine = np.arange(rank, n, world)
    if lengths is not None:
        mine = mine[np.argsort(lengths[mine], kind="stable")]
    parts = []
    for start in range(0, len(mine), batch):
        parts.append(np.asarray(run(mine[start:start + batch])))
    local = (mine, np.concatenate(parts) if parts else None)
    pieces = distributed.gather(local)
    first = next(p for _, p in pieces if p is not None)
    out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    for idx, arr in pieces:
        if arr is not None:
            out[idx] = arr
    if path is not None and distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    distributed.barrier()
    return out

"""Tensor data: .npz arrays keyed by input name (optional ``labels``), or a Python callable."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError, first_line
from edgeopt.spec import IOSpec


def _split_samples(arrays: dict[str, np.ndarray], source: str) -> list[dict[str, np.ndarray]]:
    counts = {k: len(v) if v.ndim else 0 for k, v in arrays.items()}
    if len(set(counts.values())) != 1:
        raise UsageError(f"{source}: arrays disagree on the number of samples (first axis): {counts}")
    n = next(iter(counts.values()))
    return [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)]


def from_npz(path: Path, io: IOSpec) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise UsageError(f"{path.name} is not a readable .npz ({first_line(e, 120)})") from None
    if not arrays:
        raise UsageError(f"{path.name} holds no arrays")
    labels = arrays.pop("labels", None)
    if not arrays:
        raise UsageError(f"{path.name} holds only labels; add arrays keyed by input name")
    if any(a.ndim == 0 for a in arrays.values()):
        raise UsageError(f"{path.name}: arrays need a first axis of samples")
    return Dataset(_split_samples(arrays, path.name), labels=labels, source=path.name)


def from_callable(spec: str, io: IOSpec) -> Dataset:
    """``module.path:callable`` returning an iterable of feed dicts (each may hold a batch)."""
    from edgeopt.models.arch import resolve_factory

    fn = resolve_factory(spec)
    samples = []
    try:
        for feeds in fn():
            if not isinstance(feeds, dict):
                raise UsageError(f"{spec} yielded {type(feeds).__name__}; yield dicts of input name -> array")
            samples += _split_samples({k: np.asarray(v) for k, v in feeds.items()}, spec)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"{spec} failed: {type(e).__name__}: {str(e)[:160]}") from None
    return Dataset(samples, source=spec)

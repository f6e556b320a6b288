"""The stores: one ``.npz`` per store in a folder, checked before any training starts.

Each store file holds the model's integer / float inputs by name plus ``labels``; an optional
``NAME.eval.npz`` beside ``NAME.npz`` is that store's held-out data (else 10 % of it is held out).
The id space is agreed once for all stores: ``id_space`` when given (a store reaching past it is
refused), else one past the largest id any store or the old data holds. Every store then grows its
tables to the same size, so row i means the same item everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError

EVAL_SUFFIX = ".eval.npz"


@dataclass(frozen=True)
class Store:
    name: str
    data: Path
    eval: Path | None
    samples: int


def _read(path: Path, names: list[str], what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise UsageError(f"{what} {path} is not a readable .npz ({type(e).__name__}); give one .npz per store") from None
    want = sorted([*names, "labels"])
    if sorted(arrays) != want:
        raise UsageError(f"{what} {path} has arrays {sorted(arrays)}, the model needs {want}; give every store "
                         "the same schema")
    n = len(arrays["labels"])
    if n == 0:
        raise UsageError(f"{what} {path} is empty; remove it from the stores folder or give it samples")
    if any(len(a) != n for a in arrays.values()):
        raise UsageError(f"{what} {path}: its arrays differ in length; every array needs one row per sample")
    return arrays


def find_stores(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--stores {folder} is not a folder; give a folder with one .npz per store")
    files = sorted(p for p in folder.glob("*.npz") if not p.name.endswith(EVAL_SUFFIX))
    if len(files) < 2:
        raise UsageError(f"--stores {folder} holds {len(files)} store file(s) (*.npz); federating needs at least 2")
    return files


def read_stores(folder: str | Path, *, names: list[str], int_inputs: list[str], id_space: int | None,
                labels_are_ids: bool, old: Path | None = None) -> tuple[list[Store], dict[str, int], int | None]:
    """Check every store (schema, not empty, ids within the agreed space) and return the stores, the
    agreed rows per integer input, and the agreed label count (next-item models: same as the ids)."""
    if id_space is not None and id_space < 2:
        raise UsageError(f"--id-space must be >= 2, got {id_space}")
    stores, seen = [], []
    for path in find_stores(folder):
        arrays = _read(path, names, "store")
        ev = path.with_name(path.name[:-4] + EVAL_SUFFIX)
        if not ev.exists() and len(arrays["labels"]) < 4:
            raise UsageError(f"store {path} has {len(arrays['labels'])} samples, too few to hold some out; give it "
                             f"more or a held-out {ev.name} beside it")
        parts = [arrays] + ([_read(ev, names, "held-out file")] if ev.exists() else [])
        seen += [(path, p) for p in parts]
        stores.append(Store(path.stem, path, ev if ev.exists() else None, len(arrays["labels"])))
    if old is not None:
        seen.append((old, _read(old, names, "--old-data")))
    top = {}
    for path, arrays in seen:
        for name in int_inputs + (["labels"] if labels_are_ids else []):
            a = arrays[name]
            if a.size and int(a.min()) < 0:
                raise UsageError(f"{path}: {name} holds negative ids; ids are rows of a table, >= 0")
            hi = int(a.max()) if a.size else 0
            if id_space is not None and hi >= id_space:
                raise UsageError(f"{path}: {name} reaches id {hi}, past the agreed --id-space {id_space}; "
                                 "raise --id-space or remap the store's ids")
            top[name] = max(top.get(name, 0), hi)
    rows = {n: (id_space if id_space is not None else top.get(n, 0) + 1) for n in int_inputs}
    labels = (id_space if id_space is not None else top["labels"] + 1) if labels_are_ids else None
    return stores, rows, labels

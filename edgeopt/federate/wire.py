"""What a store sends back each round (``--wire``): only what its training can have changed.

- ``full``: every array, float32, as Flower sends it.
- ``rows`` (default): dense arrays in full, but of each embedding table only the rows the store's
  data read (the ids travel anyway, in the ``rows`` ConfigRecord strategy.py reads). A row the store
  did not read has no gradient (its own loss, lwf's and FedProx's terms are all zero there, and
  local.train runs without weight decay), so it is bit for bit what the server sent: the server puts
  the sent row back and Flower's average sees the same arrays as with ``full``.
- ``compact``: ``rows``, and every float32 value as its high 16 bits. The store first moves each
  changed weight to the nearest float32 that keeps the low 16 bits of the weight the server sent
  (update/compact.py, the rounding ``update --compact-delta`` ships: at most 2^-8 of the weight);
  the server, which knows those low bits, puts them back.

The server expands a reply to full arrays (``expand``) before Flower's FedAvg sees it.
"""

from __future__ import annotations

import numpy as np

WIRES = ("full", "rows", "compact")
HIGH = ".high16"  # key suffix of an array sent as its high 16 bits


def _high(new: np.ndarray, sent: np.ndarray) -> np.ndarray:
    from edgeopt.update.compact import nearest_keeping_low_bits

    kept = nearest_keeping_low_bits(new, sent)
    return (kept.view(np.uint32) >> 16).astype(np.uint16)


def _join(high: np.ndarray, sent: np.ndarray) -> np.ndarray:
    bits = (high.astype(np.uint32) << 16) | (np.ascontiguousarray(sent, np.float32).view(np.uint32) & 0xFFFF)
    return bits.view(np.float32)


def encode(wire: str, state: dict, sent: dict[str, np.ndarray], rows: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """The arrays a store replies with: ``state`` (its trained torch state dict) against ``sent``
    (what the server sent, numpy) and ``rows`` (table path -> row ids its data read)."""
    out = {}
    for key, t in state.items():
        new = t.detach().cpu().numpy()
        old = sent[key]
        if wire != "full" and key in rows:
            new, old = new[rows[key]], old[rows[key]]
        if wire == "compact" and new.dtype == np.float32:
            out[key + HIGH] = _high(new, old)
        else:
            out[key] = np.ascontiguousarray(new)
    return out


def expand(arrays: dict[str, np.ndarray], sent: dict[str, np.ndarray], rows: dict[str, list[int]]) -> dict:
    """The full arrays a reply stands for (``encode``'s inverse given what was sent)."""
    full = {}
    for key, old in sent.items():
        if key + HIGH in arrays:  # compact: tables always come as their rows
            part = _join(arrays[key + HIGH], old[rows[key]] if key in rows else old)
        else:
            part = arrays[key]
        if part.shape != old.shape:  # only the rows the store read
            whole = old.copy()
            whole[rows[key]] = part
            part = whole
        full[key] = part
    return full


def reply_bytes(arrays: dict[str, np.ndarray], rows: dict[str, list[int]]) -> int:
    """What a reply weighs: its arrays' bytes and the row ids (counted as int64)."""
    return int(sum(a.nbytes for a in arrays.values()) + 8 * sum(len(r) for r in rows.values()))

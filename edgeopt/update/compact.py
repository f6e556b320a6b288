"""``--compact-delta``: updated weights that a delta bundle ships in about half the bytes.

A delta bundle patches each changed float32 tensor with the XOR of its old and new bits
(bundle/patch.py). After fine-tuning nearly every weight moves a little, so the XOR's sign,
exponent and top mantissa bits are mostly zero, but its low 16 bits are noise that no compressor
removes: about 2.5 of every 4 bytes ship. Here every changed weight is moved to the nearest float32
that keeps the previous version's low 16 bits (a change of at most 2^-8 of the weight: bfloat16's
resolution), so only the high half can differ. Unchanged weights stay bit for bit. The update's
metrics and its forgetting gate are measured after this step, on the weights that ship.
"""

from __future__ import annotations

import numpy as np

LOW_BITS = 16


def nearest_keeping_low_bits(new: np.ndarray, old: np.ndarray, bits: int = LOW_BITS) -> np.ndarray:
    """float32 ``new`` moved to the nearest values whose low ``bits`` bits are ``old``'s."""
    n = np.ascontiguousarray(new, np.float32).view(np.int32).astype(np.int64)
    o = np.ascontiguousarray(old, np.float32).view(np.int32).astype(np.int64)
    step = 1 << bits
    low = o & (step - 1)
    base = (n & ~(step - 1)) | low
    target = new.astype(np.float64)
    best, best_err = base, None
    for cand in (base - step, base, base + step):
        # stay within the sign-magnitude range of int32 bit patterns of the same sign as ``new``
        ok = (cand >= np.iinfo(np.int32).min) & (cand <= np.iinfo(np.int32).max) & ((cand < 0) == (n < 0))
        val = np.where(ok, cand, base).astype(np.int32).view(np.float32).astype(np.float64)
        err = np.where(ok & np.isfinite(val), np.abs(val - target), np.inf)
        if best_err is None:
            best, best_err = np.where(np.isfinite(err), cand, n), err
        else:
            better = err < best_err
            best, best_err = np.where(better, cand, best), np.where(better, err, best_err)
    out = best.astype(np.int32).view(np.float32).reshape(new.shape)
    return np.where(new == old, old, out).astype(np.float32)  # unchanged weights keep their exact bits


def keep_low_bits(module, previous, bits: int = LOW_BITS) -> dict:
    """Apply ``nearest_keeping_low_bits`` to every float32 tensor of ``module`` against the same
    tensor of ``previous`` (the model before the update; grown tables compare their old rows).
    Returns what changed: tensors, weights moved, the largest relative change."""
    import torch

    prev = previous.state_dict()
    tensors = moved = 0
    worst = 0.0
    with torch.no_grad():
        for name, t in module.state_dict().items():
            p = prev.get(name)
            if p is None or t.dtype != torch.float32 or p.dtype != torch.float32 or t.ndim != p.ndim:
                continue
            rows = min(t.shape[0], p.shape[0]) if t.ndim else None
            if t.ndim and t.shape[1:] != p.shape[1:]:
                continue
            new = t[:rows].cpu().numpy() if t.ndim else t.cpu().numpy()
            old = p[:rows].cpu().numpy() if t.ndim else p.cpu().numpy()
            kept = nearest_keeping_low_bits(new, old, bits)
            changed = new != kept
            if changed.any():
                rel = np.abs(kept[changed] - new[changed]) / np.maximum(np.abs(new[changed]), 1e-30)
                worst = max(worst, float(rel.max()))
                moved += int(changed.sum())
            tensors += 1
            src = torch.from_numpy(kept)
            if t.ndim:
                t[:rows].copy_(src)
            else:
                t.copy_(src)
    return {"low_bits_kept": bits, "tensors": tensors, "weights_moved": moved,
            "max_relative_change": worst}

"""Numerical verification of an artifact against its source model on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (atol, rtol, min cosine) per (format, precision); rtol scales with |reference|.
TOLERANCES = {
    ("onnx", "fp32"): (1e-4, 1e-4, 0.99999),
    ("openvino", "fp32"): (1e-3, 1e-3, 0.9999),
    ("openvino", "fp16"): (2e-2, 2e-2, 0.999),
    ("tensorrt", "fp16"): (2e-2, 2e-2, 0.999),
    ("tensorrt", "fp32"): (1e-3, 1e-3, 0.9999),
}


@dataclass
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float

    @classmethod
    def for_artifact(cls, fmt: str, precision: str) -> "Tolerance":
        return cls(*TOLERANCES.get((fmt, precision), (1e-3, 1e-3, 0.999)))


def _cosines(ref: np.ndarray, out: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per-sample cosine; 1 where both vectors are within ``floor`` of zero (a direction there is
    noise, and the absolute check already bounds the difference)."""
    a = ref.reshape(ref.shape[0], -1).astype(np.float64) if ref.ndim else ref.reshape(1, 1).astype(np.float64)
    b = out.reshape(a.shape).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na <= floor) & (nb <= floor)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def compare(references: list[dict], outputs: list[dict], tol: Tolerance) -> dict:
    """Max abs / rel diff and per-sample cosine over all samples and outputs, with the verdict."""
    max_abs = max_rel = 0.0
    cosines = []
    within = True
    for ref, out in zip(references, outputs):
        for name, r in ref.items():
            if name not in out:
                return {"passed": False, "error": f"output {name!r} missing from the artifact"}
            o = np.asarray(out[name])
            if o.shape != r.shape:
                return {"passed": False, "error": f"output {name!r} has shape {o.shape}, source {r.shape}"}
            if r.dtype.kind in "iub":
                same = bool(np.array_equal(r, o))
                within &= same
                max_abs = max(max_abs, 0.0 if same else float(np.abs(r.astype(np.int64) - o.astype(np.int64)).max()))
                continue
            r64, o64 = r.astype(np.float64), o.astype(np.float64)
            if not np.isfinite(o64).all():
                return {"passed": False, "error": f"output {name!r} has NaN or Inf"}
            diff = np.abs(r64 - o64)
            max_abs = max(max_abs, float(diff.max(initial=0.0)))
            big = np.abs(r64) >= 1e-3  # relative error is meaningless near zero
            if big.any():
                max_rel = max(max_rel, float((diff[big] / np.abs(r64[big])).max()))
            within &= bool((diff <= tol.atol + tol.rtol * np.abs(r64)).all())
            cosines.append(_cosines(r64, o64, floor=tol.atol))
    cos = np.concatenate(cosines) if cosines else np.ones(1)
    passed = within and float(cos.min()) >= tol.min_cosine
    return {"passed": bool(passed), "max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "samples": len(references), "atol": tol.atol, "rtol": tol.rtol, "min_cosine": tol.min_cosine}

"""Numerical verification of an artifact against its source model on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeopt.errors import first_line
from edgeopt.optimize.metrics import cosines

if TYPE_CHECKING:
    from edgeopt.export.options import ExportOptions

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


def compare(references: list[dict], outputs: list[dict], tol: Tolerance) -> dict:
    """Max abs / rel diff and per-sample cosine over all samples and outputs, with the verdict."""
    max_abs = max_rel = 0.0
    per_sample = []
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
            per_sample.append(cosines(r64, o64, floor=tol.atol))
    cos = np.concatenate(per_sample) if per_sample else np.ones(1)
    passed = within and float(cos.min()) >= tol.min_cosine
    return {"passed": bool(passed), "max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "samples": len(references), "atol": tol.atol, "rtol": tol.rtol, "min_cosine": tol.min_cosine}


def verify_artifact(path: Path, runtime: str, fmt: str, precision: str, feeds, refs, opts: ExportOptions) -> dict:
    """Run the artifact at ``path`` on ``runtime`` over ``feeds`` and compare its outputs with
    ``refs`` at its format's tolerance (or --atol / --rtol); a runtime that cannot run it fails."""
    from edgeopt.backends import get_runtime

    try:
        session = get_runtime(runtime).load(str(path), threads=opts.threads, precision=precision)
        outs = [session.run(f) for f in feeds]
    except Exception as e:  # noqa: BLE001 - a runtime that cannot run the artifact fails its verification
        return {"passed": False, "error": f"{runtime} could not run it: {first_line(e, 200)}", "runtime": runtime}
    tol = Tolerance.for_artifact(fmt, precision)
    tol.atol = tol.atol if opts.atol is None else opts.atol
    tol.rtol = tol.rtol if opts.rtol is None else opts.rtol
    result = compare(refs, outs, tol)
    result["runtime"] = runtime
    return result

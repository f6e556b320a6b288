"""Install-time health check: ``python -m edgeopt.runtime.health FOLDER [--prepare]``.

Runs in a fresh process, as the device will at its next start: (optionally) builds the
install-time cache for the artifact this device will use, loads FOLDER through ``load`` exactly
as a serving process would (cache included), runs the golden inputs recorded by ``edgeopt
package`` and compares with that artifact's golden outputs within the manifest's tolerance.
Prints one JSON line; exit 0 when healthy, 1 when not, 2 when the folder cannot be loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgeopt.runtime import cache
from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.model import ENGINES, choose, load
from edgeopt.runtime import manifest as manifest_io


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tol: dict) -> dict:
    """Max abs diff, worst per-row cosine, and the verdict for atol + rtol * |expected| and min_cosine."""
    atol, rtol, min_cos = float(tol.get("atol", 1e-4)), float(tol.get("rtol", 1e-4)), float(tol.get("min_cosine", 0.999))
    worst_abs, worst_cos, within = 0.0, 1.0, True
    for name, ref in expected.items():
        if name not in actual:
            return {"passed": False, "error": f"output {name!r} missing"}
        out = np.asarray(actual[name])
        if out.shape != ref.shape:
            return {"passed": False, "error": f"output {name!r} has shape {out.shape}, golden {ref.shape}"}
        r, o = ref.astype(np.float64), out.astype(np.float64)
        if not np.isfinite(o).all():
            return {"passed": False, "error": f"output {name!r} has NaN or Inf"}
        diff = np.abs(r - o)
        worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
        within &= bool((diff <= atol + rtol * np.abs(r)).all())
        if r.dtype.kind == "f" and r.size:
            a, b = r.reshape(r.shape[0] if r.ndim else 1, -1), o.reshape(r.shape[0] if r.ndim else 1, -1)
            na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
            cos = np.where((na == 0) & (nb == 0), 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-30))
            worst_cos = min(worst_cos, float(cos.min()))
    return {"passed": bool(within and worst_cos >= min_cos), "max_abs_diff": worst_abs, "cosine_min": worst_cos,
            "atol": atol, "rtol": rtol, "min_cosine": min_cos}


def prepare(folder: Path) -> str:
    """Build the cache entry for the artifact ``load`` will pick here; returns what was done."""
    manifest = manifest_io.read(folder)
    art, name, _ = choose(folder, manifest)
    if name not in ("onnxruntime", "openvino"):
        return f"{name}: nothing to prepare"
    target = cache.prepare(folder, art, ENGINES[name], cache.cache_dir_for(folder))
    return f"{name}: {target}"


def golden(model) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """(golden inputs, the golden outputs of the artifact ``model`` runs, their tolerance)."""
    health = model.manifest.get("health") or {}
    entry = (health.get("outputs") or {}).get(model.artifact["path"])
    if not health.get("inputs") or not entry:
        raise BundleError(f"no golden outputs for {model.artifact['path']} in the manifest")
    try:
        with np.load(model.folder / health["inputs"], allow_pickle=False) as f:
            feeds = {k: f[k] for k in f.files}
        with np.load(model.folder / entry["file"], allow_pickle=False) as f:
            expected = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read the golden files of {model.folder}: {e}") from None
    return feeds, expected, entry.get("tolerance") or {}


def check_model(model) -> dict:
    """Run a loaded model on its golden inputs and compare (what install and serve both call)."""
    try:
        feeds, expected, tol = golden(model)
    except BundleError as e:
        return {"passed": False, "error": str(e), **model.describe()}
    return {**compare(expected, model.run(feeds), tol), **model.describe()}


def check(folder: Path) -> dict:
    return check_model(load(folder, check_hashes=False))


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m edgeopt.runtime.health FOLDER [--prepare]", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    try:
        prepared = prepare(folder) if "--prepare" in argv[1:] else None
        result = check(folder)
    except BundleError as e:
        print(json.dumps({"passed": False, "error": str(e)}))
        return 2
    if prepared:
        result["prepared"] = prepared
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

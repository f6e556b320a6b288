"""Golden inputs and outputs for the install-time health check, recorded at package time.

Inputs: the user's ``--golden FILE.npz``, else the packaged tokenizer on fixed product titles (text
models: the device's own preprocessing path), else seeded random tensors from the input specs
(integer ids below the rows of the table each indexes in model.onnx, models/graph_ids.py).
Outputs: each shipped artifact run through the device runtime (``edgeopt.runtime``) on this
machine. An artifact whose runtime is not here (a TensorRT engine packaged on a CPU machine) gets
the FP32 ONNX outputs instead, with its precision's tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError

TEXTS = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt",
         "stainless steel 12 cup programmable coffee maker with thermal carafe", "organic"]
# Same artifact on another device (another ISA, thread count, runtime build): (atol, rtol, min cosine).
TOLERANCE = {"fp32": (1e-4, 1e-3, 0.9999), "fp16": (2e-2, 2e-2, 0.999), "bf16": (5e-2, 5e-2, 0.99),
             "int8": (5e-2, 1e-1, 0.99)}
DIM = {"batch": 2, "sequence": 16}


def _tolerance(precision: str) -> dict:
    atol, rtol, cos = TOLERANCE.get(precision, TOLERANCE["int8"])
    return {"atol": atol, "rtol": rtol, "min_cosine": cos}


def make_inputs(folder: Path, manifest: dict, golden: str | None) -> dict[str, np.ndarray]:
    names = [i["name"] for i in manifest.get("inputs", [])]
    if golden is not None:
        path = Path(golden)
        if not path.is_file() or path.suffix != ".npz":
            raise UsageError(f"--golden {golden}: expected an .npz file keyed by input name")
        with np.load(path, allow_pickle=False) as f:
            feeds = {k: f[k] for k in f.files if k in names}
        missing = [n for n in names if n not in feeds]
        if missing:
            raise UsageError(f"--golden {golden} has no array {missing[0]!r}; the model takes {', '.join(names)}")
        return feeds
    pre = manifest.get("preprocessing") or {}
    if pre.get("tokenizer"):
        from edgeopt.runtime.text import TextEncoder

        return TextEncoder(folder / pre["tokenizer"], int(pre.get("max_length") or 128), names)(TEXTS)
    rng = np.random.default_rng(0)
    feeds = {}
    limits = {}
    if (folder / "model.onnx").is_file():  # ids below the rows of the table each integer input indexes
        from edgeopt.models.graph_ids import index_limits

        limits = index_limits(folder / "model.onnx", "onnx")
    for spec in manifest.get("inputs", []):
        shape = tuple(d if isinstance(d, int) else DIM.get(d, 4) for d in spec["shape"])
        if spec["dtype"].startswith(("float", "bfloat")):
            feeds[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"].replace("bfloat16", "float32"))
        elif spec["dtype"] == "bool":
            feeds[spec["name"]] = np.ones(shape, bool)
        else:
            high = np.minimum(np.asarray(limits.get(spec["name"], 2)), 100)  # one bound, or one per column
            if high.ndim and (not shape or shape[-1] != high.size):
                high = high.min()
            feeds[spec["name"]] = rng.integers(0, high, shape).astype(spec["dtype"])
    return feeds


def record(stage: Path, manifest: dict, feeds: dict[str, np.ndarray], log) -> dict:
    """Write golden/inputs.npz and golden/<artifact>.npz; returns the manifest's ``health`` section."""
    from edgeopt.runtime import BundleError, load
    from edgeopt.runtime.model import ENGINES, RUNTIME_OF_FORMAT

    import importlib.util

    (stage / "golden").mkdir(exist_ok=True)
    np.savez(stage / "golden" / "inputs.npz", **feeds)
    outputs, fp32 = {}, None
    arts = sorted(manifest["artifacts"], key=lambda a: a.get("format") != "onnx" or a.get("precision") != "fp32")
    for art in arts:
        runtime = RUNTIME_OF_FORMAT.get(art.get("format"))
        entry = {"file": f"golden/{art['path']}.npz", "tolerance": _tolerance(art.get("precision", "fp32"))}
        if runtime is not None and importlib.util.find_spec(ENGINES[runtime].module) is not None \
                and runtime != "tensorrt":
            log(f"recording golden outputs of {art['path']} ({runtime})")
            try:
                result = load(stage, runtime=runtime, artifact=art["path"], use_cache=False).run(feeds)
            except BundleError as e:
                raise UsageError(f"cannot run {art['path']} to record its golden outputs: {e}") from None
            entry["reference"] = f"{art['path']} on {runtime}"
            if art.get("format") == "onnx" and art.get("precision") == "fp32":
                fp32 = result
        elif fp32 is not None:
            result, entry["reference"] = fp32, "model.onnx (fp32) on onnxruntime"
        else:
            raise UsageError(f"cannot record golden outputs for {art['path']}: {runtime} is not installed here "
                             "and the bundle has no FP32 ONNX artifact to stand in; package on a machine with it")
        path = stage / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **result)
        outputs[art["path"]] = entry
    return {"inputs": "golden/inputs.npz", "outputs": outputs}

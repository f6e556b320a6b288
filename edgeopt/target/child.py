"""Runs every artifact of a job on the golden inputs: ``python -m edgeopt.target.child JOB_DIR``.

The same code runs on this machine (the reference outputs) and inside the emulated aarch64 Python,
so both sides load artifacts the way a device does: edgeopt.runtime's engines, one thread, no
cache. Imports numpy and the runtimes only (the device runtime's lean rule). ``JOB_DIR/job.json``
lists ``{"key", "path", "runtime", "precision", "inputs"}``; each artifact's outputs go to
``JOB_DIR/<key>.out.npz`` and its status to ``JOB_DIR/<key>.status.json``. No timings: emulated
speed says nothing about a device.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np


def engine(path: Path, runtime: str, precision: str):
    if runtime == "openvino":
        from edgeopt.runtime.openvino import OvEngine

        return OvEngine(path, threads=1, precision=precision)
    from edgeopt.runtime.ort import OrtEngine

    return OrtEngine(path, threads=1, precision=precision)


def run_job(job_dir: Path) -> None:
    job = json.loads((job_dir / "job.json").read_text())
    for item in job["artifacts"]:
        status = {"machine": platform.machine(), "python": platform.python_version()}
        try:
            with np.load(job_dir / item["inputs"], allow_pickle=False) as f:
                samples = int(f["samples"])
                feeds = [{k.split("/", 1)[1]: f[k] for k in f.files if k.startswith(f"{i}/")} for i in range(samples)]
            session = engine(Path(item["path"]), item["runtime"], item["precision"])
            outputs = {f"{i}/{name}": v for i, feed in enumerate(feeds) for name, v in session.run(feed).items()}
            np.savez(job_dir / f"{item['key']}.out.npz", **outputs)
            status["ok"] = True
            status["runtime_version"] = _version(item["runtime"])
        except Exception as e:  # noqa: BLE001 - one artifact that cannot run is that artifact's verdict
            status.update(ok=False, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}")
        (job_dir / f"{item['key']}.status.json").write_text(json.dumps(status))


def _version(runtime: str) -> str:
    if runtime == "openvino":
        import openvino

        return openvino.get_version()
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m edgeopt.target.child JOB_DIR", file=sys.stderr)
        sys.exit(2)
    run_job(Path(sys.argv[1]))

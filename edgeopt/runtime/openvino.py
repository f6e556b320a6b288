"""OpenVINO engine for the device runtime (CPU).

Cold start: install compiles the IR once with ``CACHE_DIR`` set (cache.py), so a later process
imports the compiled blob instead of compiling again. FP32 IRs run with an f32 precision hint so
that CPUs with bf16 do not drift from the verified numbers (as edgeopt.backends.openvino does).
Sequence-length buckets that the export wrote into an IR are not used here: the dynamic model
answers every length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

name = "openvino"
module = "openvino"


def version() -> str:
    import openvino as ov

    return ov.get_version()


def _config(precision: str, threads: int | None, cache_dir: Path | None) -> dict:
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision in ("fp32", "fp16"):
        config["INFERENCE_PRECISION_HINT"] = "f32" if precision == "fp32" else "f16"
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def prepare(src: Path, cache_dir: Path, precision: str) -> None:
    """Compile ``src`` once with ``cache_dir`` as OpenVINO's model cache (install time)."""
    import openvino as ov

    ov.Core().compile_model(str(src), "CPU", _config(precision, None, cache_dir))


class OvEngine:
    def __init__(self, path: Path, *, threads: int | None = None, precision: str = "fp32",
                 cached: Path | None = None, prepack: bool = True, cache_dir: Path | None = None):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU", _config(precision, threads, cache_dir))
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() if p.get_names() else f"output{i}"
                             for i, p in enumerate(self.compiled.outputs)]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer({k: feeds[k] for k in self.input_names})
        return {n: np.asarray(result[i]) for i, n in enumerate(self.output_names)}

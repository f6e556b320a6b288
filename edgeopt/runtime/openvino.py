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


def port_name(port, fallback: str) -> str:
    """The name a user knows a port by. OpenVINO merges the names of tensors it folds together (an
    ONNX Cast right after an input: {"C1", "/inner/embedding/Cast_output_0"}, as torch-rechub's
    rankers export), and get_any_name() may then return the exporter's internal one, which no feed
    or manifest uses: a name without the exporter's leading "/" is preferred."""
    names = port.get_names()
    if not names:
        return fallback
    first = port.get_any_name()
    clean = sorted(n for n in names if not n.startswith("/"))
    return first if not first.startswith("/") or not clean else clean[0]


class OvEngine:
    def __init__(self, path: Path, *, threads: int | None = None, precision: str = "fp32",
                 cached: Path | None = None, prepack: bool = True, cache_dir: Path | None = None):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU", _config(precision, threads, cache_dir))
        self.request = self.compiled.create_infer_request()
        self.input_names = [port_name(p, f"input{i}") for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [port_name(p, f"output{i}") for i, p in enumerate(self.compiled.outputs)]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer({k: feeds[k] for k in self.input_names})
        return {n: np.asarray(result[i]) for i, n in enumerate(self.output_names)}

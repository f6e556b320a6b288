"""ONNX Runtime engine: the one onnxruntime executor, for the device and for the build side alike
(edgeopt.backends.onnxruntime adds I/O specs, availability and GPU provider selection around it).
It loads ``.onnx`` and ``.ort`` (mobile) files alike: onnxruntime tells them apart by the extension.

Cold start: ``prepare`` runs at install time on the device itself and saves the fully optimized
graph in ORT format (``SessionOptions.optimized_model_filepath``); ``OrtEngine`` then loads that
file with graph optimization off, instead of parsing the ONNX protobuf and optimizing the graph
again in every process. The saved graph may hold CPU-specific layouts (NCHWc), which is why it is
made on the device and keyed to its CPU and ORT version (cache.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

name = "onnxruntime"
module = "onnxruntime"
CPU = ("CPUExecutionProvider",)


def _options(ort, threads: int | None, prepack: bool):
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the NCHWc "hardware specific" warning is expected on the device
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    return so


def version() -> str:
    import onnxruntime as ort

    return ort.__version__


def prepare(src: Path, out: Path) -> None:
    """Write ``src`` optimized for this CPU, in ORT format, to ``out`` (install time)."""
    import onnxruntime as ort

    so = _options(ort, None, True)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(out)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


class OrtEngine:
    def __init__(self, path: Path, *, threads: int | None = None, precision: str = "fp32",
                 cached: Path | None = None, prepack: bool = True, cache_dir: Path | None = None,
                 providers: tuple[str, ...] = CPU):
        import onnxruntime as ort

        so = _options(ort, threads, prepack)
        if cached is not None:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.add_session_config_entry("session.load_model_format", "ORT")
            # not session.use_ort_model_bytes_directly: the Python binding copies the bytes into a
            # temporary, which that option would then point into after it is freed (a crash)
            path = cached
        self.session = ort.InferenceSession(str(path), so, providers=list(providers))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))

"""OpenVINO: loads IR (.xml + .bin) or ONNX on the CPU.

On CPUs with bf16 support OpenVINO computes FP32 models in bf16 by default; an FP32 artifact is
run with INFERENCE_PRECISION_HINT=f32 so that its numbers match the source model.
"""

from __future__ import annotations

import numpy as np

from edgeopt.runtimes.base import Availability, dist_version, not_installed
from edgeopt.spec import TensorSpec

_OV_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i64": "int64",
              "i32": "int32", "i8": "int8", "u8": "uint8", "boolean": "bool"}


def _spec(port, i: int) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else f"dim{j}"
                  for j, d in enumerate(port.get_partial_shape()))
    names = port.get_names()
    name = port.get_any_name() if names else f"output{i}"
    return TensorSpec(name, _OV_DTYPES.get(port.get_element_type().get_type_name(), "float32"), shape)


class OvSession:
    def __init__(self, path: str, *, threads: int | None, precision: str, cache_dir: str | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else
                  ("f16" if precision == "fp16" else "bf16"),
                  "PERFORMANCE_HINT": "LATENCY"}
        if precision == "int8":
            config.pop("INFERENCE_PRECISION_HINT")  # int8 kernels; non-quantized parts keep the default
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if cache_dir:
            config["CACHE_DIR"] = cache_dir
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = [_spec(p, i) for i, p in enumerate(self.compiled.inputs)]
        self.outputs = [_spec(p, i) for i, p in enumerate(self.compiled.outputs)]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = {i.name for i in self.inputs}
        result = self.request.infer({k: v for k, v in feeds.items() if k in wanted})
        return {spec.name: np.asarray(result[port]) for spec, port in zip(self.outputs, self.compiled.outputs)}


class OpenVinoRuntime:
    name = "openvino"
    formats = ("openvino", "onnx")

    def availability(self) -> Availability:
        version = dist_version("openvino")
        if version is None:
            return not_installed(self.name, "openvino", "pip install 'edgeopt[openvino]'")
        import openvino as ov

        return Availability(self.name, True, version, details={"devices": ov.Core().available_devices})

    def load(self, path, *, threads=None, device="cpu", precision="fp32", cache_dir=None) -> OvSession:
        return OvSession(path, threads=threads, precision=precision, cache_dir=cache_dir)

"""ONNX Runtime: loads .onnx files on the CPU (and CUDA / TensorRT execution providers on GPUs)."""

from __future__ import annotations

import numpy as np

from edgeopt.errors import UnavailableError
from edgeopt.backends.base import Availability, dist_version, not_installed
from edgeopt.spec import TensorSpec

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16"}
_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
              "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or f"dim{i}") for i, d in enumerate(arg.shape))
    return TensorSpec(arg.name, _ORT_DTYPES.get(arg.type, "float32"), shape)


class OrtSession:
    def __init__(self, path: str, *, threads: int | None, device: str):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = _PROVIDERS[device]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise UnavailableError(f"requested onnxruntime provider {missing[0]}, "
                                   f"available: {ort.get_available_providers()}")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.outputs]
        wanted = {i.name for i in self.inputs}
        return dict(zip(names, self.session.run(names, {k: v for k, v in feeds.items() if k in wanted})))


class OnnxRuntime:
    name = "onnxruntime"
    formats = ("onnx",)

    def availability(self) -> Availability:
        version = dist_version("onnxruntime") or dist_version("onnxruntime-gpu")
        if version is None:
            return not_installed(self.name, "onnxruntime", "pip install onnxruntime")
        import onnxruntime as ort

        return Availability(self.name, True, version, details={"providers": ort.get_available_providers()})

    def load(self, path, *, threads=None, device="cpu", precision="fp32") -> OrtSession:
        return OrtSession(path, threads=threads, device=device)

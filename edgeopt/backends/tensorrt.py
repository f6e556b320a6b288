"""TensorRT: runs serialized engines (.plan) on NVIDIA GPUs.

Everything here imports tensorrt lazily, so the module loads on machines without it and
``availability`` explains why it cannot run. Engine *building* lives in
``edgeopt.export.tensorrt``.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from edgeopt.errors import UnavailableError
from edgeopt.backends.base import Availability, dist_version
from edgeopt.spec import TensorSpec

HINT = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU (see Dockerfile.gpu)"


def nvidia_gpus() -> list[dict]:
    """GPUs reported by nvidia-smi: name, memory and compute capability; [] when there is none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "compute_capability": parts[2]})
    return gpus


def tensorrt_version() -> str | None:
    """Installed TensorRT (the metapackage or a CUDA-specific wheel), without importing it."""
    return dist_version("tensorrt") or dist_version("tensorrt-cu12") or dist_version("tensorrt-cu13")


def gpu_arch_tag(compute_capability: str) -> str:
    """Engine file tag for a GPU: compute capability 8.9 -> 'sm89'."""
    return "sm" + compute_capability.replace(".", "")


class TensorRtRuntime:
    name = "tensorrt"
    formats = ("tensorrt",)

    def availability(self) -> Availability:
        version = tensorrt_version()
        gpus = nvidia_gpus()
        if version is None:
            return Availability(self.name, False, reason="tensorrt is not installed", hint=HINT)
        if not gpus:
            return Availability(self.name, False, version,
                                reason="no NVIDIA GPU found (nvidia-smi missing or lists none)", hint=HINT)
        return Availability(self.name, True, version, details={"gpus": gpus})

    def load(self, path, *, threads=None, device="gpu", precision="int8") -> "TrtSession":
        avail = self.availability()
        if not avail.ok:
            raise UnavailableError(f"tensorrt unavailable: {avail.reason}; {avail.hint}")
        return TrtSession(path)


_TRT_TO_NP = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64",
              "INT8": "int8", "BOOL": "bool", "UINT8": "uint8", "BF16": "bfloat16"}


class TrtSession:  # pragma: no cover - needs a GPU; exercised by tests marked `gpu`
    """Runs a TensorRT engine with torch CUDA tensors as I/O buffers (TensorRT 10 tensor API)."""

    def __init__(self, path: str):
        import tensorrt as trt
        import torch

        self.torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise UnavailableError(f"{path}: TensorRT could not deserialize the engine "
                                   "(built for another GPU or TensorRT version?); rebuild it here")
        self.context = self.engine.create_execution_context()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = _TRT_TO_NP.get(self.engine.get_tensor_dtype(name).name, "float32")
            shape = tuple(d if d >= 0 else f"dim{j}" for j, d in enumerate(self.engine.get_tensor_shape(name)))
            spec = TensorSpec(name, dtype, shape)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(spec)
        self.stream = torch.cuda.Stream()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        keep = []
        for spec in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[spec.name])).cuda()
            keep.append(t)
            self.context.set_input_shape(spec.name, tuple(t.shape))
            self.context.set_tensor_address(spec.name, t.data_ptr())
        outs = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            t = torch.empty(shape, dtype=getattr(torch, spec.dtype), device="cuda")
            outs[spec.name] = t
            self.context.set_tensor_address(spec.name, t.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return {k: v.cpu().numpy() for k, v in outs.items()}

"""TensorRT engine (NVIDIA GPUs): the one TensorRT executor, for the device and for the build side
alike (edgeopt.backends.tensorrt adds I/O specs and availability around it; export builds engines).

An engine runs only on the GPU architecture and TensorRT release that built it, so the export names
it ``tensorrt/model.<precision>.sm<cc>-trt<major.minor>.plan`` and ``matches`` compares that tag with
this device. GPU buffers come from the CUDA runtime through ctypes (as Polygraphy does), so the
device needs tensorrt and libcudart, not torch. Only what the CPU path needs is imported at the top.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path

import numpy as np

from edgeopt.runtime.errors import BundleError

name = "tensorrt"
module = "tensorrt"
_TAG = re.compile(r"\.(sm\d+)-trt(\d+\.\d+)\.plan$")


def version() -> str | None:
    import importlib.metadata  # here, not at the top: it costs a CPU device's cold start ~10 ms

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def nvidia_gpus() -> list[dict]:
    """GPUs reported by nvidia-smi: name, memory and compute capability; [] when there is none."""
    import shutil
    import subprocess

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


def device_tag() -> tuple[str | None, str]:
    """('sm89-trt10.3', '') for this device's first GPU, or (None, why not)."""
    trt_version = version()
    if trt_version is None:
        return None, "tensorrt is not installed"
    gpus = nvidia_gpus()
    if not gpus:
        return None, "no NVIDIA GPU (nvidia-smi missing or lists none)"
    return engine_tag(gpus[0]["compute_capability"], trt_version), ""


def gpu_arch_tag(compute_capability: str) -> str:
    """A GPU's part of an engine's tag: compute capability 8.9 -> 'sm89'."""
    return "sm" + compute_capability.strip().replace(".", "")


def engine_tag(compute_capability: str, trt_version: str) -> str:
    """The tag an engine's file name carries, which ``matches`` compares: ('8.9', '10.3.0') -> 'sm89-trt10.3'."""
    return f"{gpu_arch_tag(compute_capability)}-trt{'.'.join(trt_version.split('.')[:2])}"


def matches(path: str, tag: str) -> bool:
    m = _TAG.search(path)
    return m is not None and f"{m[1]}-trt{m[2]}" == tag


class _Cuda:
    H2D, D2H = 1, 2

    def __init__(self):
        names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
        spec = importlib.util.find_spec("nvidia")  # the pip wheels' CUDA runtime
        for root in (spec.submodule_search_locations or []) if spec else []:
            names += [str(p) for p in sorted(Path(root).glob("cu*/lib/libcudart.so*"))]
            names += [str(p) for p in sorted(Path(root).glob("cuda_runtime/lib/libcudart.so*"))]
        for lib in names:
            try:
                self.lib = ctypes.CDLL(lib)
                break
            except OSError:
                continue
        else:
            raise BundleError("TensorRT needs the CUDA runtime (libcudart), which was not found")
        self.stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"CUDA {what} failed with error {status}")

    def malloc(self, nbytes: int) -> ctypes.c_void_p:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return ptr

    def copy(self, dst, src, nbytes: int, kind: int) -> None:
        self._check(self.lib.cudaMemcpy(dst, src, ctypes.c_size_t(nbytes), kind), "cudaMemcpy")

    def free(self, ptr) -> None:
        self.lib.cudaFree(ptr)

    def sync(self) -> None:
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class TrtEngine:  # pragma: no cover - needs a GPU; exercised by tests marked `gpu`
    def __init__(self, path: Path, *, threads: int | None = None, precision: str = "fp16",
                 cached: Path | None = None, prepack: bool = True, cache_dir: Path | None = None):
        import tensorrt as trt

        self.trt, self.cuda = trt, _Cuda()
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BundleError(f"{path}: TensorRT could not deserialize the engine (another GPU or TensorRT?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cuda, held = self.trt, self.cuda, []
        try:
            for n in self.input_names:
                a = np.ascontiguousarray(feeds[n], dtype=trt.nptype(self.engine.get_tensor_dtype(n)))
                ptr = cuda.malloc(a.nbytes)
                held.append(ptr)
                cuda.copy(ptr, a.ctypes.data_as(ctypes.c_void_p), a.nbytes, cuda.H2D)
                self.context.set_input_shape(n, a.shape)
                self.context.set_tensor_address(n, ptr.value)
            outs = {}
            for n in self.output_names:
                arr = np.empty(tuple(self.context.get_tensor_shape(n)), dtype=trt.nptype(self.engine.get_tensor_dtype(n)))
                ptr = cuda.malloc(arr.nbytes)
                held.append(ptr)
                self.context.set_tensor_address(n, ptr.value)
                outs[n] = (arr, ptr)
            if not self.context.execute_async_v3(cuda.stream.value or 0):
                raise RuntimeError("TensorRT execution failed")
            cuda.sync()
            for arr, ptr in outs.values():
                cuda.copy(arr.ctypes.data_as(ctypes.c_void_p), ptr, arr.nbytes, cuda.D2H)
            return {n: arr for n, (arr, _) in outs.items()}
        finally:
            for ptr in held:
                cuda.free(ptr)

"""ONNX Runtime on the build side: availability, execution providers and I/O specs around the device
runtime's engine (edgeopt/runtime/ort.py), which runs .onnx and .ort files on the CPU (and the CUDA
execution provider on GPUs)."""

from __future__ import annotations

from edgeopt.backends.base import Availability, EngineSession, dist_version, not_installed
from edgeopt.errors import UnavailableError
from edgeopt.spec import TensorSpec

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16"}
_PROVIDERS = {"cpu": ("CPUExecutionProvider",),
              "gpu": ("CUDAExecutionProvider", "CPUExecutionProvider")}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or f"dim{i}") for i, d in enumerate(arg.shape))
    return TensorSpec(arg.name, _ORT_DTYPES.get(arg.type, "float32"), shape)


def providers_for(device: str) -> tuple[str, ...]:
    """The execution providers for ``device`` (cpu, gpu); UnavailableError naming what exists."""
    import onnxruntime as ort

    if device not in _PROVIDERS:
        raise UnavailableError(f"unknown onnxruntime device {device!r}; available: {', '.join(_PROVIDERS)}")
    available = ort.get_available_providers()
    missing = [p for p in _PROVIDERS[device] if p not in available]
    if missing:
        raise UnavailableError(f"requested onnxruntime provider {missing[0]}, available: {available}")
    return _PROVIDERS[device]


def session(engine) -> EngineSession:
    """An OrtEngine with its I/O specs read from the ORT session."""
    return EngineSession(engine, [_spec(a) for a in engine.session.get_inputs()],
                         [_spec(a) for a in engine.session.get_outputs()])


class OnnxRuntime:
    name = "onnxruntime"
    formats = ("onnx", "ort")

    def availability(self) -> Availability:
        version = dist_version("onnxruntime") or dist_version("onnxruntime-gpu")
        if version is None:
            return not_installed(self.name, "onnxruntime", "pip install onnxruntime")
        import onnxruntime as ort

        return Availability(self.name, True, version, details={"providers": ort.get_available_providers()})

    def load(self, path, *, threads=None, device="cpu", precision="fp32", cached=None) -> EngineSession:
        """``cached``: an ORT-format graph that ``edgeopt.runtime.ort.prepare`` optimized from
        ``path`` on this machine, loaded instead of optimizing ``path`` again (the device's cache)."""
        from edgeopt.runtime.ort import OrtEngine

        return session(OrtEngine(path, threads=threads, precision=precision, cached=cached,
                                 providers=providers_for(device)))

"""TensorRT on the build side: availability and I/O specs around the device runtime's engine
(edgeopt/runtime/tensorrt.py), which runs serialized engines (.plan) on NVIDIA GPUs and knows the
GPUs here (nvidia_gpus) and the engine tag, re-exported for export, bench and doctor.

Everything here imports tensorrt lazily, so the module loads on machines without it and
``availability`` explains why it cannot run. Engine *building* lives in ``edgeopt.export.tensorrt``.
"""

from __future__ import annotations

from edgeopt.backends.base import Availability, EngineSession
from edgeopt.errors import UnavailableError
from edgeopt.runtime.tensorrt import gpu_arch_tag, nvidia_gpus, version as tensorrt_version
from edgeopt.spec import TensorSpec

HINT = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU (see Dockerfile.gpu)"
_TRT_TO_NP = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64",
              "INT8": "int8", "BOOL": "bool", "UINT8": "uint8", "BF16": "bfloat16"}

__all__ = ["HINT", "TensorRtRuntime", "gpu_arch_tag", "io_specs", "nvidia_gpus", "tensorrt_version"]


def io_specs(engine, is_input) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a deserialized ``tensorrt.ICudaEngine`` (TensorRT 10 tensor API);
    ``is_input(name)`` says whether a tensor is an input. Dynamic axes become 'dim<i>'."""
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = _TRT_TO_NP.get(engine.get_tensor_dtype(name).name, "float32")
        shape = tuple(d if d >= 0 else f"dim{j}" for j, d in enumerate(engine.get_tensor_shape(name)))
        (inputs if is_input(name) else outputs).append(TensorSpec(name, dtype, shape))
    return inputs, outputs


def session(engine) -> EngineSession:  # pragma: no cover - needs a GPU; exercised by tests marked `gpu`
    """A TrtEngine with its I/O specs."""
    inputs = set(engine.input_names)
    return EngineSession(engine, *io_specs(engine.engine, inputs.__contains__))


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

    def load(self, path, *, threads=None, device="gpu", precision="int8") -> EngineSession:
        avail = self.availability()
        if not avail.ok:
            raise UnavailableError(f"tensorrt unavailable: {avail.reason}; {avail.hint}")
        from edgeopt.runtime.tensorrt import TrtEngine

        return session(TrtEngine(path, precision=precision))

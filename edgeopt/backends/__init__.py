"""Inference backends (onnxruntime, OpenVINO, TensorRT) behind one interface (see base.py); the
module list is the registry. Build side: availability, provider choice and I/O specs around the
executors of the device runtime that ships in bundles (`edgeopt.runtime`), which are the only ones."""

from __future__ import annotations

from edgeopt.errors import UsageError
from edgeopt.backends.base import Availability, Runtime, Session


def all_runtimes() -> dict[str, Runtime]:
    from edgeopt.backends.onnxruntime import OnnxRuntime
    from edgeopt.backends.openvino import OpenVinoRuntime
    from edgeopt.backends.tensorrt import TensorRtRuntime

    return {r.name: r for r in (OnnxRuntime(), OpenVinoRuntime(), TensorRtRuntime())}


def get_runtime(name: str) -> Runtime:
    runtimes = all_runtimes()
    if name not in runtimes:
        raise UsageError(f"unknown runtime {name!r}; available: {', '.join(runtimes)}")
    return runtimes[name]


__all__ = ["Availability", "Runtime", "Session", "all_runtimes", "get_runtime"]

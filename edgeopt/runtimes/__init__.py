"""Inference runtimes behind one interface (see base.py). The module list is the registry."""

from __future__ import annotations

from edgeopt.errors import UsageError
from edgeopt.runtimes.base import Availability, Runtime, Session


def all_runtimes() -> dict[str, Runtime]:
    from edgeopt.runtimes.onnxruntime import OnnxRuntime
    from edgeopt.runtimes.openvino import OpenVinoRuntime
    from edgeopt.runtimes.tensorrt import TensorRtRuntime

    return {r.name: r for r in (OnnxRuntime(), OpenVinoRuntime(), TensorRtRuntime())}


def get_runtime(name: str) -> Runtime:
    runtimes = all_runtimes()
    if name not in runtimes:
        raise UsageError(f"unknown runtime {name!r}; available: {', '.join(runtimes)}")
    return runtimes[name]


__all__ = ["Availability", "Runtime", "Session", "all_runtimes", "get_runtime"]

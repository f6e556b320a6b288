"""The environment a benchmark ran in: CPU model and ISA flags, cores, threads, versions."""

from __future__ import annotations

import os
import platform
import re

from edgeopt import __version__
from edgeopt.backends.base import dist_version

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "torch", "tensorrt", "tensorrt-cu12")
_FLAG_RE = re.compile(r"^(avx|amx|fma|f16c|sse4|vnni|bf16|asimd|sve|i8mm)")


def environment() -> dict:
    from edgeopt.backends.tensorrt import nvidia_gpus
    from edgeopt.cpu import cpu_info

    cpu = cpu_info()
    flags = {f for f in cpu.flags if _FLAG_RE.match(f)}
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": {"model": cpu.model, "arch": cpu.arch, "isa": list(cpu.isa), "flags": sorted(flags),
                    "logical_cores": cpu.logical_cores, "allowed_cores": allowed},
            "gpus": nvidia_gpus(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": {"edgeopt": __version__, **{k: v for k in PACKAGES if (v := dist_version(k))}},
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}

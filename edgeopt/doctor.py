"""What can run here: runtimes with versions, CPU ISA, GPUs, and a hint for each missing piece."""

from __future__ import annotations

import platform

from edgeopt.backends.base import Availability, dist_version
from edgeopt.cpu import cpu_info


def torch_availability() -> Availability:
    version = dist_version("torch")
    if version is None:
        return Availability("torch", False, reason="torch is not installed",
                            hint="pip install torch (CPU: pip install torch --index-url .../cpu)")
    return Availability("torch", True, version, details={"cuda_build": "+cpu" not in version})


def report() -> dict:
    from edgeopt.backends import all_runtimes
    from edgeopt.backends.tensorrt import nvidia_gpus

    runtimes = [r.availability() for r in all_runtimes().values()]
    runtimes.append(torch_availability())
    return {"runtimes": [r.to_json() for r in runtimes], "cpu": cpu_info().to_json(), "gpus": nvidia_gpus(),
            "python": platform.python_version(), "platform": platform.platform()}

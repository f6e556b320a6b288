"""What can run here: runtimes with versions, CPU ISA, GPUs, and a hint for each missing piece."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from edgeopt.backends.base import Availability, dist_version

# /proc/cpuinfo flag -> what it means for inference
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (fast INT8)",
    "avx_vnni": "AVX-VNNI (fast INT8)",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_int8": "AMX INT8",
    "amx_bf16": "AMX BF16",
    "asimddp": "Arm dot product (fast INT8)",
    "i8mm": "Arm I8MM (fast INT8)",
}


def cpu_info(cpuinfo: str | None = None) -> dict:
    """CPU model, logical cores and the inference-relevant ISA extensions present."""
    if cpuinfo is None:
        p = Path("/proc/cpuinfo")
        cpuinfo = p.read_text() if p.exists() else ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    isa = [name for flag, name in ISA_FLAGS.items() if flag in flags]
    return {"model": model, "arch": platform.machine(), "logical_cores": os.cpu_count(),
            "isa": isa, "int8_acceleration": any("INT8" in n for n in isa), "flags": sorted(flags)}


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
    return {"runtimes": [r.to_json() for r in runtimes], "cpu": cpu_info(), "gpus": nvidia_gpus(),
            "python": platform.python_version(), "platform": platform.platform()}

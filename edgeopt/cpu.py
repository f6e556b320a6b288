"""CPU facts: model, architecture, logical cores and the ISA extensions that matter for inference.

Read by bench (the environment a result was measured in), optimize / export (whether INT8 can be
fast here, and the CPU whose speed decided which INT8 artifacts were kept) and doctor; a leaf
module so that none of them imports another's command."""

from __future__ import annotations

import os
import platform
from pathlib import Path

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

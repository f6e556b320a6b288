"""CPU facts: model, architecture, logical cores and the ISA extensions that matter for inference.

Read by bench (the environment a result was measured in), optimize / export (whether INT8 can be
fast here, and the CPU whose speed decided which INT8 artifacts were kept) and doctor; a leaf
module so that none of them imports another's command."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str  # platform.machine(): x86_64, aarch64, ...
    logical_cores: int | None
    isa: tuple[str, ...]  # the ISA_FLAGS names present, in ISA_FLAGS order
    flags: tuple[str, ...]  # every flag the kernel reports, sorted

    @property
    def int8_acceleration(self) -> bool:
        """An INT8 dot-product instruction (VNNI, AMX INT8, Arm dot product / I8MM)."""
        return any("INT8" in name for name in self.isa)

    def to_json(self) -> dict:
        return {"model": self.model, "arch": self.arch, "logical_cores": self.logical_cores, "isa": list(self.isa),
                "int8_acceleration": self.int8_acceleration, "flags": list(self.flags)}


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """CPU model, logical cores and the inference-relevant ISA extensions present (``cpuinfo``:
    the text of /proc/cpuinfo, read when not given)."""
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
    isa = tuple(name for flag, name in ISA_FLAGS.items() if flag in flags)
    return CpuInfo(model, platform.machine(), os.cpu_count(), isa, tuple(sorted(flags)))

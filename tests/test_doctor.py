from edgeopt.cpu import cpu_info
from edgeopt.backends.tensorrt import gpu_arch_tag

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8
"""


def test_cpu_isa_from_cpuinfo():
    info = cpu_info(CPUINFO)
    assert info.model == "AMD EPYC 9R14"
    assert "AVX-512 VNNI (fast INT8)" in info.isa and "AMX INT8" in info.isa
    assert info.int8_acceleration and info.to_json()["int8_acceleration"] is True


def test_no_int8_isa():
    info = cpu_info("model name : Old\nflags : sse2 avx2\n")
    assert info.isa == ("AVX2",) and not info.int8_acceleration


def test_gpu_arch_tag():
    assert gpu_arch_tag("8.9") == "sm89"

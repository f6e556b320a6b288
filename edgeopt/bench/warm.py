"""Measurement loops that run inside the benchmark child: numpy only, nothing else.

Warm-up is separated from measurement; every sample is one ``perf_counter_ns`` interval around
one call. A fixed numpy micro-kernel (the machine-speed reference) is timed in blocks
interleaved with the candidate's blocks, so a baseline recorded on a faster or slower machine,
or on a busier moment of the same one, can be compared by the ratio candidate / reference.
"""

from __future__ import annotations

import threading
import time

import numpy as np

_REF_DATA = np.random.default_rng(1234).standard_normal(1 << 15).astype(np.float32)


def reference_kernel() -> float:
    """The machine-speed reference: single-threaded numpy work (no BLAS, whose threads vary)."""
    a = np.sort(_REF_DATA)
    b = np.cumsum(a * a)
    return float(np.exp(np.clip(b[::97], -20.0, 20.0)).sum())


def time_ns(fn, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def time_both_ns(fn, n: int, wall: list[int], cpu: list[int]) -> None:
    """Wall time and process CPU time (all threads) of n calls."""
    for _ in range(n):
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        fn()
        t1, c1 = time.perf_counter_ns(), time.process_time_ns()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)


def with_slowdown(call, fraction: float):
    """``call`` plus extra CPU work of ``fraction`` x its own median CPU time, inside the call.

    A busy-wait on this thread's CPU clock: a real, known slowdown (as if the model did that much
    more computation), used only by the benchmark of the regression gate.
    """
    if fraction <= 0:
        return call
    wall: list[int] = []
    cpu: list[int] = []
    time_both_ns(call, 9, wall, cpu)
    extra = int(np.median(cpu) * fraction)

    def slowed():
        call()
        end = time.thread_time_ns() + extra
        while time.thread_time_ns() < end:
            pass

    return slowed


def warm_up(call, seconds: float, min_iters: int = 3) -> int:
    n, deadline = 0, time.perf_counter() + seconds
    while n < min_iters or time.perf_counter() < deadline:
        call()
        n += 1
    return n


def measure(call, *, seconds: float, blocks: int = 4, reference: bool = True,
            min_iters: int = 10, max_iters: int = 5000) -> dict:
    """Latency samples of ``call`` in ``blocks`` blocks, each preceded by a reference block.

    Returns wall-clock ``latency_ns`` and ``reference_ns`` and the process CPU time of the same
    calls (``cpu_ns``, ``reference_cpu_ns``: insensitive to time spent descheduled by other
    processes); the candidate is measured for about ``seconds`` (at least ``min_iters`` calls).
    """
    latency, cpu, ref, ref_cpu = [], [], [], []
    per_block = seconds / blocks
    for _ in range(blocks):
        if reference:
            time_both_ns(reference_kernel, 8, ref, ref_cpu)
        n, deadline = 0, time.perf_counter() + per_block
        while (n < min_iters // blocks + 1 or time.perf_counter() < deadline) and len(latency) < max_iters:
            time_both_ns(call, 1, latency, cpu)
            n += 1
    if reference:
        time_both_ns(reference_kernel, 8, ref, ref_cpu)
    return {"latency_ns": latency, "reference_ns": ref, "cpu_ns": cpu, "reference_cpu_ns": ref_cpu}


def parallel_throughput(call, *, workers: int, seconds: float) -> float:
    """Completed calls per second with ``workers`` threads calling concurrently (runtimes release the GIL)."""
    counts = [0] * workers
    barrier = threading.Barrier(workers + 1)
    stop = [0.0]

    def loop(i):
        barrier.wait()
        while time.perf_counter() < stop[0]:
            call()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def openvino_async_throughput(compiled, feeds: dict, *, jobs: int, seconds: float) -> float:
    """Completed requests per second with ``jobs`` OpenVINO async infer requests in flight."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, jobs)
    done = [0]

    def callback(request, userdata):
        done[0] += 1

    queue.set_callback(callback)
    names = {n for p in compiled.inputs for n in p.get_names()}  # any of a port's names feeds it
    feeds = {k: v for k, v in feeds.items() if k in names}
    t0 = time.perf_counter()
    stop = t0 + seconds
    while time.perf_counter() < stop:
        queue.start_async(feeds)
    queue.wait_all()
    return done[0] / (time.perf_counter() - t0)

"""Spawn benchmark children and interleave them.

Every measurement runs in its own fresh process (``python -m edgeopt.bench.child``), constrained
by its target profile before exec (CPU affinity, RLIMIT_AS). Candidates are rotated across rounds
rather than run back to back, so slow drifts of a shared machine spread over all of them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.bench.cases import BenchCase
from edgeopt.bench.child import MARK
from edgeopt.bench.profiles import Profile
from edgeopt.errors import UsageError
from edgeopt.manifest import companions
from edgeopt.backends.base import dist_version

# perf_counter is CLOCK_MONOTONIC on Linux: one clock for parent and child.
SHARED_CLOCK = "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation
CACHEABLE = ("onnxruntime", "openvino")


@dataclass
class Job:
    candidate: BenchCase
    profile: Profile
    threads: int | None = None  # None: the profile's

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.candidate.artifact, self.candidate.runtime, self.profile.name)


@dataclass
class JobResult:
    unavailable: str | None = None
    cold: list[dict] = field(default_factory=list)
    cold_cache: list[dict] = field(default_factory=list)  # empty cache: what the very first start pays
    warm_cache: list[dict] = field(default_factory=list)  # cache filled by the previous start
    rounds: list[list[dict]] = field(default_factory=list)  # one list of per-batch results per warm child
    errors: list[str] = field(default_factory=list)
    page_cache: str = "as found (files may be cached)"


def unavailable_reason(c: BenchCase, p: Profile) -> str | None:
    """Why this runtime cannot run on this target here, or None."""
    if c.url is not None:  # a served model: the server's runtime is its own business
        return None
    dist = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",),
            "torch": ("torch",), "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")}[c.runtime]
    if not any(dist_version(d) for d in dist):
        return f"{c.runtime} is not installed (pip install {dist[0]})"
    if p.device == "cpu":
        if c.runtime == "tensorrt":
            return "TensorRT engines run on NVIDIA GPUs only; use --target gpu"
        return None
    if c.runtime == "openvino":
        return "edgeopt runs OpenVINO on the CPU; the gpu target means CUDA / TensorRT"
    if c.runtime == "torch":
        return "the torch eager baseline runs on the CPU only"
    from edgeopt.backends.tensorrt import nvidia_gpus

    if not nvidia_gpus():
        return "no NVIDIA GPU found (nvidia-smi missing or lists none)"
    if c.runtime == "onnxruntime":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (f"onnxruntime has no CUDAExecutionProvider (available: {ort.get_available_providers()}); "
                    "pip install onnxruntime-gpu")
    if c.runtime == "tensorrt":
        from edgeopt.backends import get_runtime

        avail = get_runtime("tensorrt").availability()
        if not avail.ok:
            return f"{avail.reason}; {avail.hint}"
    return None


def evict_from_page_cache(path: Path) -> bool:
    """Drop the artifact's files from the page cache (posix_fadvise: no root needed)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path, *companions(path)]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _limits(profile: Profile):
    cores, memory = profile.pinned_cores(), profile.memory_mb

    def apply():  # runs in the child between fork and exec
        import resource

        if cores:
            os.sched_setaffinity(0, cores)
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory << 20, memory << 20))

    return apply if (cores or memory) else None


@functools.lru_cache(maxsize=64)
def _index_limits(path: Path, fmt: str) -> dict:
    from edgeopt.models.graph_ids import index_limits

    return index_limits(path, fmt)


def spawn(job: Job, cfg: dict, *, timeout: float) -> dict:
    """Run one child; {"cold": phases in ms, "warm": [...]} or {"error": ..., "phase": ...}."""
    c, p = job.candidate, job.profile
    cfg = {"runtime": c.runtime, "path": str(c.path), "precision": c.precision, "device": p.device,
           "threads": job.threads or p.threads, "limits": _index_limits(c.path, c.format), "url": c.url, **cfg}
    cmd = [sys.executable, "-m", "edgeopt.bench.child", json.dumps(cfg)]
    t_spawn = time.perf_counter_ns()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=_limits(p))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "phase": "?"}
    msgs = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    out: dict = {}
    for m in msgs:
        if m["event"] == "cold":
            start = t_spawn if SHARED_CLOCK else m["t_start"]
            out["cold"] = {"startup_ms": (m["t_start"] - start) / 1e6,
                           "import_ms": (m["t_import"] - m["t_start"]) / 1e6,
                           "load_ms": (m["t_load"] - m["t_import"]) / 1e6,
                           "first_inference_ms": (m["t_first"] - m["t_feeds"]) / 1e6,
                           "total_ms": (m["t_first"] - start) / 1e6, "heavy_modules": m.get("heavy_modules", [])}
        elif m["event"] == "warm":
            out["warm"] = m["batches"]
        elif m["event"] == "error":
            out.update(error=m["error"], phase=m["phase"], memory=m.get("memory", False))
    if proc.returncode != 0 and "error" not in out:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or [""]
        died = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        out.update(error=f"child {died}: {tail[0][:300]}", phase="?", memory=proc.returncode < 0 or "alloc" in tail[0])
    if "error" in out and p.memory_mb and out.get("memory"):
        out["error"] = f"memory cap of {p.memory_mb} MB (RLIMIT_AS) hit: {out['error']}"
    return out


def _rotate(items: list, r: int) -> list:
    if not items:
        return items
    k = r % len(items)
    return items[k:] + items[:k]


def _check_fatal(job: Job, res: dict) -> None:
    """A candidate that cannot even load on an unconstrained profile is bad input (exit 2)."""
    if "error" in res and res.get("phase") in ("import", "load") and not job.profile.memory_mb:
        raise UsageError(f"cannot load {job.candidate.path.name} with {job.candidate.runtime}: {res['error']}")


def run_jobs(jobs: list[Job], *, cold_runs: int, cache_modes: bool, drop_caches: bool, repeats: int,
             warm_cfg: dict, seq_len: int, timeout: float = 600.0, log=lambda m: None) -> dict:
    results = {job.key: JobResult() for job in jobs}
    active = []
    for job in jobs:
        reason = unavailable_reason(job.candidate, job.profile)
        if reason:
            results[job.key].unavailable = reason
        else:
            active.append(job)
    workdir = Path(tempfile.mkdtemp(prefix="edgeopt-bench-"))
    failed: set = set()
    cold_cfg = {"mode": "cold", "seq_len": seq_len, "model_options": warm_cfg.get("model_options")}
    try:
        for r in range(cold_runs):
            for job in _rotate(active, r):
                if job.key in failed:
                    continue
                res = results[job.key]
                log(f"cold start {r + 1}/{cold_runs}: {job.candidate.label} on {job.profile.name}")
                if drop_caches:
                    evicted = evict_from_page_cache(job.candidate.path)
                    res.page_cache = "evicted before each run (posix_fadvise DONTNEED)" if evicted else res.page_cache
                out = spawn(job, cold_cfg, timeout=timeout)
                _check_fatal(job, out)
                if "error" in out:
                    res.errors.append(out["error"])
                    failed.add(job.key)
                    continue
                res.cold.append(out["cold"])
                if cache_modes and job.candidate.runtime in CACHEABLE and job.candidate.format != "ort":  # optimized offline
                    cache = workdir / f"cache-{len(os.listdir(workdir))}"
                    cache.mkdir()
                    for bucket in (res.cold_cache, res.warm_cache):  # empty cache, then the one it just filled
                        out = spawn(job, {**cold_cfg, "cache_dir": str(cache)}, timeout=timeout)
                        if "error" in out:
                            res.errors.append(f"with cache: {out['error']}")
                            break
                        bucket.append(out["cold"])
        for r in range(repeats):
            for job in _rotate(active, r):
                if job.key in failed:
                    continue
                log(f"warm round {r + 1}/{repeats}: {job.candidate.label} on {job.profile.name}")
                out = spawn(job, {"mode": "warm", "seq_len": seq_len, **warm_cfg}, timeout=timeout)
                _check_fatal(job, out)
                if "error" in out:
                    results[job.key].errors.append(out["error"])
                    failed.add(job.key)
                    continue
                results[job.key].rounds.append(out["warm"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results

"""``run_bench``: ARTIFACT + options -> the benchmark document (and the gate verdict)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import UsageError


def parse_int_list(text: str | list[int], flag: str) -> list[int]:
    if isinstance(text, list):
        items = text
    else:
        try:
            items = [int(x) for x in str(text).split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"{flag} {text!r} is not a comma-separated list of integers") from None
    if not items or any(i < 1 for i in items):
        raise UsageError(f"{flag} {text!r}: every value must be a positive integer")
    return sorted(set(items))


@dataclass
class BenchOptions:
    runtimes: list[str] | None = None  # None: each artifact's own runtimes
    targets: list[str] = field(default_factory=lambda: ["cpu"])
    batches: list[int] = field(default_factory=lambda: [1])
    seq_len: int = 64
    cold_runs: int = 5
    repeats: int = 5  # warm rounds: one fresh child per artifact per round, interleaved
    seconds: float = 0.5  # measured time per batch size per round
    warmup: float = 0.2
    concurrency: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    cache_modes: bool = True
    drop_caches: bool = False
    profiles_file: str | None = None
    model_options: dict = field(default_factory=dict)  # --arch etc. for torch models
    slowdown: float = 0.0  # injected busy-wait (fraction of own latency); only for the gate's own benchmark
    timeout: float = 600.0

    def __post_init__(self):
        self.batches = parse_int_list(self.batches, "--batch")
        self.concurrency = parse_int_list(self.concurrency, "--concurrency")
        if self.seq_len < 1:
            raise UsageError(f"--seq-len must be >= 1, got {self.seq_len}")
        if self.cold_runs < 0:
            raise UsageError(f"--cold-runs must be >= 0, got {self.cold_runs}")
        if self.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {self.repeats}")
        if self.seconds <= 0 or self.warmup < 0:
            raise UsageError("--seconds must be > 0 and --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        if not self.targets:
            raise UsageError("--target is empty; choose from cpu, mobile, gpu (or a profile of --profiles)")

    def to_json(self) -> dict:
        return {"runtimes": self.runtimes, "targets": self.targets, "batches": self.batches, "seq_len": self.seq_len,
                "cold_runs": self.cold_runs, "repeats": self.repeats, "seconds": self.seconds, "warmup": self.warmup,
                "concurrency": self.concurrency, "threads": self.threads, "cache_modes": self.cache_modes,
                "drop_caches": self.drop_caches, "slowdown": self.slowdown}


def run_bench(artifact: str | Path, opts: BenchOptions, *, log=lambda m: None) -> dict:
    from edgeopt.bench.cases import expand
    from edgeopt.bench.driver import Job, run_jobs
    from edgeopt.bench.env import environment
    from edgeopt.bench.profiles import resolve_targets
    from edgeopt.bench.records import build_records, document

    profiles = resolve_targets(opts.targets, opts.profiles_file)
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as work:
        candidates = expand(artifact, runtimes=opts.runtimes, workdir=Path(work))
        jobs = [Job(c, p, threads=opts.threads if p.threads is None else p.threads)
                for p in profiles for c in candidates]
        warm_cfg = {"batches": opts.batches, "seconds": opts.seconds, "warmup": opts.warmup,
                    "concurrency": opts.concurrency, "slowdown": opts.slowdown,
                    "model_options": opts.model_options}
        results = run_jobs(jobs, cold_runs=opts.cold_runs, cache_modes=opts.cache_modes,
                           drop_caches=opts.drop_caches, repeats=opts.repeats, warm_cfg=warm_cfg,
                           seq_len=opts.seq_len, timeout=opts.timeout, log=log)
    records = build_records(jobs, results, batches=opts.batches, seq_len=opts.seq_len)
    return document(records, environment=environment(), options=opts.to_json())

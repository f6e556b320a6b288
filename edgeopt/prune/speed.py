"""Speed proven on the runtime, not assumed from MACs: the unpruned and the pruned model are each
exported (edgeopt's export pipeline) and timed by ``edgeopt.bench`` in fresh processes on the
runtime and target the user names. A structured prune that is not faster there fails the gate;
``--target-speedup`` bisects over the ratio for the least-pruned model that reaches the target.

Latency depends on the widths, not on the weights, so candidates are timed before any recovery.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from edgeopt.errors import GateError, UsageError
from edgeopt.models.base import LoadedModel

RUNTIMES = {"onnxruntime": ("onnx",), "openvino": ("onnx", "openvino"), "tensorrt": ("onnx", "tensorrt")}
# a pruned model must run at most this share of the unpruned latency to count as faster: closer to
# 1 is within the run-to-run spread of a CPU benchmark, not a speedup
FASTER = 0.97
SEARCH_MAX = 0.9  # --target-speedup never prunes more than this share

LatencyFn = Callable[[LoadedModel, str], dict]


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown --runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


def exported_latency(model: LoadedModel, workdir: Path, *, runtime: str, target: str, seq_len: int = 32,
                     log: Callable[[str], None] = lambda m: None) -> dict:
    """Export ``model`` under workdir for ``runtime`` and bench it at batch 1: p50 / p90 in ms."""
    from edgeopt.bench.run import BenchOptions, run_bench
    from edgeopt.export.pipeline import ExportOptions, export_model

    folder = Path(tempfile.mkdtemp(prefix="latency-", dir=workdir)) / model.name
    log(f"exporting {model.name} ({', '.join(RUNTIMES[runtime])}) for timing")
    result = export_model(model, folder, ExportOptions(targets=RUNTIMES[runtime], shape_buckets="off"))
    if not result.passed:
        return {"error": "the exported model did not match the PyTorch model"}
    log(f"timing {model.name} with {runtime} on {target} in fresh processes")
    opts = BenchOptions(runtimes=[runtime], targets=[target], cold_runs=0, repeats=3, seconds=0.3,
                        cache_modes=False, seq_len=seq_len)
    doc = run_bench(folder, opts, log=lambda m: None)
    rec = next((r for r in doc["records"] if r.get("latency_ms")), None)
    if rec is None:
        err = next((r.get("error") or r.get("unavailable") for r in doc["records"]), "no measurement")
        return {"error": str(err)}
    return {"runtime": runtime, "target": target, "batch": rec["batch"], "p50_ms": rec["latency_ms"]["p50"],
            "p90_ms": rec["latency_ms"]["p90"], "seq_len": seq_len if model.is_text else None}


def verdict(base: dict, pruned: dict, *, target_speedup: float | None = None) -> dict:
    """The gate: the pruned model's p50 over the unpruned one's, against the target (or FASTER)."""
    if "p50_ms" not in base or "p50_ms" not in pruned:
        return {"passed": False, "ratio": None, "limit": target_speedup or FASTER,
                "reason": f"could not be timed: {base.get('error') or pruned.get('error')}"}
    ratio = pruned["p50_ms"] / base["p50_ms"]
    limit = target_speedup if target_speedup is not None else FASTER
    passed = ratio <= limit
    reason = (f"the pruned model runs at {ratio:.2f}x the unpruned latency"
              + (f" (limit {limit:.2f}x)" if passed else
                 f", not below {limit:.2f}x: " + ("it is not faster on this runtime" if target_speedup is None
                                                 else "the target speedup is not reached")))
    return {"passed": passed, "ratio": ratio, "limit": limit, "reason": reason}


def search_ratio(make: Callable[[float], LoadedModel], measure: LatencyFn, base: dict, target: float, *,
                 steps: int = 5, log: Callable[[str], None] = lambda m: None) -> tuple[float, LoadedModel, list[dict]]:
    """Bisect the ratio in (0, SEARCH_MAX] for the least-pruned model whose p50 is <= target x base.

    ``make(ratio)`` prunes a fresh copy; returns (ratio, that model, every candidate timed)."""
    if "p50_ms" not in base:
        raise GateError(f"--target-speedup: the unpruned model could not be timed ({base.get('error')})")
    tried, best = [], None

    def attempt(r: float) -> bool:
        nonlocal best
        model = make(r)
        row = {"ratio": r, **measure(model, f"ratio {r:.2f}")}
        row["speedup"] = row["p50_ms"] / base["p50_ms"] if "p50_ms" in row else None
        tried.append(row)
        ok = row["speedup"] is not None and row["speedup"] <= target
        log(f"ratio {r:.3f}: " + (f"{row['speedup']:.2f}x the unpruned latency" if row["speedup"] is not None
                                  else row.get("error", "not timed")))
        if ok and (best is None or r < best[0]):
            best = (r, model)
        return ok

    lo, hi = 0.0, SEARCH_MAX
    while True:  # the most pruning the model allows (no layer emptied, widths rounded) bounds the search
        try:
            top = attempt(hi)
            break
        except UsageError:
            if hi <= 0.1:
                raise
            hi = round(hi - 0.05, 4)
    if not top:
        fastest = min((t["speedup"] for t in tried if t["speedup"] is not None), default=None)
        raise GateError(f"--target-speedup {target}: even ratio {hi} runs at "
                        + (f"{fastest:.2f}x" if fastest is not None else "an unmeasured share of")
                        + " the unpruned latency on this runtime; relax the target")
    for _ in range(steps):
        mid = round((lo + hi) / 2, 4)  # the ratio reported is the one pruned and timed
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    return best[0], best[1], tried

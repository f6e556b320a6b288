"""Latency after export: each model exported to FP32 ONNX and timed by ``edgeopt.bench`` in fresh
processes (the runtime a store runs, not PyTorch eager). Used for the report and for choosing a
layer-dropped student under ``--latency-budget``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from edgeopt.errors import GateError
from edgeopt.models.base import LoadedModel

RUNTIME = "onnxruntime"


def bench_options(seq_len: int = 32):
    from edgeopt.bench.run import BenchOptions

    return BenchOptions(runtimes=[RUNTIME], cold_runs=1, repeats=3, seconds=0.3, cache_modes=False, seq_len=seq_len)


def exported_latency(model: LoadedModel, workdir: Path, *, seq_len: int = 32,
                     log: Callable[[str], None] = lambda m: None) -> dict:
    """Export ``model`` to ONNX under workdir and bench it: p50 / p90 in ms at batch 1, and bytes."""
    from edgeopt.bench.run import run_bench
    from edgeopt.export.pipeline import ExportOptions, export_model

    folder = Path(tempfile.mkdtemp(prefix="latency-", dir=workdir)) / model.name
    log(f"exporting {model.name} to ONNX for timing")
    result = export_model(model, folder, ExportOptions(targets=("onnx",), shape_buckets="off"))
    if not result.passed:
        return {"error": "the exported ONNX model did not match the PyTorch model"}
    log(f"timing {model.name} with {RUNTIME} in fresh processes")
    doc = run_bench(folder, bench_options(seq_len), log=lambda m: None)
    rec = next((r for r in doc["records"] if r.get("latency_ms")), None)
    if rec is None:
        err = next((r.get("error") or r.get("unavailable") for r in doc["records"]), "no measurement")
        return {"error": str(err)}
    return {"runtime": RUNTIME, "batch": rec["batch"], "p50_ms": rec["latency_ms"]["p50"],
            "p90_ms": rec["latency_ms"]["p90"], "onnx_bytes": (folder / "model.onnx").stat().st_size,
            "seq_len": seq_len if model.is_text else None}


def choose_depth(teacher: LoadedModel, budget: float, workdir: Path,
                 log: Callable[[str], None] = lambda m: None) -> tuple[int, list[dict], dict]:
    """The deepest layer-dropped student whose exported p50 is <= budget x the teacher's.

    Candidates are the untrained layer-dropped students (latency does not depend on the weights)."""
    from edgeopt.distill.students import check_layers, layer_dropped

    depth = check_layers(teacher, 1)
    base = exported_latency(teacher, workdir, log=log)
    if "error" in base:
        raise GateError(f"--latency-budget: the teacher could not be timed ({base['error']})")
    candidates = []
    for keep in range(depth - 1, 0, -1):
        student, _ = layer_dropped(teacher, keep, workdir)
        row = {"layers": keep, **exported_latency(student, workdir, log=log)}
        if "p50_ms" in row:
            row["ratio"] = row["p50_ms"] / base["p50_ms"]
        candidates.append(row)
        log(f"{keep} layers: " + (f"{row['ratio']:.2f}x the teacher" if "ratio" in row else row.get("error", "")))
        if row.get("ratio") is not None and row["ratio"] <= budget:
            return keep, candidates, base
    best = min((c for c in candidates if "ratio" in c), key=lambda c: c["ratio"], default=None)
    raise GateError(f"no layer-dropped student meets --latency-budget {budget}: the fastest "
                    + (f"({best['layers']} layer{'s' if best['layers'] > 1 else ''}) runs at {best['ratio']:.2f}x "
                       "the teacher" if best else "could not be timed")
                    + "; raise the budget or pass --student")

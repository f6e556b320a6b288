"""The benchmark JSON of DESIGN.md (one record per artifact, runtime, target, batch) and its
pytest-benchmark-compatible twin."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

import numpy as np

from edgeopt import __version__
from edgeopt.bench.driver import Job, JobResult
from edgeopt.bench.stats import QUANTILE, median_min_max, subsample, summary
from edgeopt.errors import UsageError, first_line

SCHEMA = "edgeopt-bench/1"
PHASES = ("startup_ms", "import_ms", "load_ms", "first_inference_ms", "total_ms")
CACHE_MECHANISM = {"openvino": "OpenVINO CACHE_DIR (compiled blob)",
                   "onnxruntime": "onnxruntime pre-optimized model (optimized_model_filepath, "
                                  "then loaded with graph optimizations off)"}
SAMPLES_PER_ROUND = 300


def cold_summary(runs: list[dict]) -> dict | None:
    if not runs:
        return None
    return {"runs": len(runs), **{k: median_min_max([r[k] for r in runs]) for k in PHASES}}


def _cold(job: Job, res: JobResult) -> tuple[dict | None, dict | None]:
    cold = cold_summary(res.cold)
    if cold:
        cold.update(batch=1, page_cache=res.page_cache, heavy_modules=res.cold[0].get("heavy_modules", []),
                    runs_ms=[{k: round(r[k], 3) for k in PHASES} for r in res.cold])
    cache = None
    if res.cold_cache:
        cache = {"mechanism": CACHE_MECHANISM[job.candidate.runtime],
                 "cold_cache": cold_summary(res.cold_cache), "warm_cache": cold_summary(res.warm_cache)}
    return cold, cache


def _warm(batch: int, rounds: list[list[dict]]) -> dict:
    rows = [row for rnd in rounds for row in rnd if row["batch"] == batch]
    ok = [row for row in rows if "error" not in row and row.get("latency_ms")]
    if not ok:
        return {"error": next((row["error"] for row in rows if "error" in row), "no warm measurement")}
    latency = [x for row in ok for x in row["latency_ms"]]
    refs = [float(np.quantile(row["reference_ms"], QUANTILE)) for row in ok]
    concurrent: dict[str, list[float]] = {}
    for row in ok:
        for k, v in row.get("concurrent_ips", {}).items():
            concurrent.setdefault(k, []).append(v)
    return {"latency_ms": summary(latency),
            "throughput_ips": batch * 1000.0 / float(np.mean(latency)),
            "throughput_concurrent_ips": {k: float(np.median(v)) for k, v in concurrent.items()},
            "peak_rss_mb": max(row["peak_rss_mb"] for row in ok),
            **({"static_variants": ok[-1]["static_variants"]} if ok[-1].get("static_variants") else {}),
            "reference_ms": float(np.median(refs)),
            "normalized_latency": float(np.mean([np.quantile(row["latency_ms"], QUANTILE) / r
                                                 for row, r in zip(ok, refs)])),
            "cpu_ms": summary([x for row in ok for x in row["cpu_ms"]]),
            "samples": {"statistic": f"p{QUANTILE * 100:.0f}", "rounds": [
                {"latency_ms": subsample(row["latency_ms"], SAMPLES_PER_ROUND), "reference_ms": r,
                 "cpu_ms": subsample(row["cpu_ms"], SAMPLES_PER_ROUND),
                 "reference_cpu_ms": float(np.quantile(row["reference_cpu_ms"], QUANTILE))}
                for row, r in zip(ok, refs)]}}


def build_records(jobs: list[Job], results: dict, *, batches: list[int], seq_len: int) -> list[dict]:
    records = []
    for job in jobs:
        c, p, res = job.candidate, job.profile, results[job.key]
        base = {"model": c.model, "artifact": c.artifact, "path": c.url or str(c.path), "format": c.format,
                "precision": c.precision, "runtime": c.runtime, "target": p.name, "profile": p.to_json(),
                "threads": job.threads or p.threads, "seq_len": seq_len, "model_bytes": c.bytes}
        cold, cache = _cold(job, res)
        for batch in batches:
            rec = {**base, "batch": batch, "cold_start": cold, "latency_ms": None, "throughput_ips": None,
                   "peak_rss_mb": None}
            if res.unavailable:
                rec["unavailable"] = res.unavailable
            elif res.rounds:
                rec.update(_warm(batch, res.rounds))
            else:
                rec["error"] = res.errors[0] if res.errors else "not measured"
            if cache:
                rec["cold_start_cache"] = cache
            if res.errors:
                rec["errors"] = res.errors
            records.append(rec)
    return records


def failed_measurements(records: list[dict]) -> list[str]:
    """One line per record whose measurement could not be taken (a runtime or device that is not
    here is 'unavailable', not a failure)."""
    lines = []
    for r in records:
        errors = [r["error"]] if r.get("error") else []
        errors += [e for e in r.get("errors", []) if e not in errors]
        if errors and not r.get("unavailable"):
            lines.append(f"{r['artifact']} [{r['runtime']}] on {r['target']}, batch {r['batch']}: {errors[0]}")
    return lines


def document(records: list[dict], *, environment: dict, options: dict) -> dict:
    return {"schema": SCHEMA, "created_by": f"edgeopt {__version__}",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment, "options": options, "records": records}


def read_document(path: str | Path, what: str = "baseline") -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{what} file {path} is not readable JSON ({first_line(e, 1000)})") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA or not isinstance(data.get("records"), list):
        raise UsageError(f"{what} file {path} has schema {schema!r}, expected {SCHEMA!r}; "
                         "write one with `edgeopt bench ... --json FILE`")
    return data


def record_key(rec: dict) -> tuple:
    """How a record finds its baseline: model, artifact file name, runtime, target, batch."""
    return (rec["model"], rec["artifact"], rec["runtime"], rec["target"], rec["batch"])


def _pb_stats(seconds: list[float]) -> dict:
    a = np.sort(np.asarray(seconds, dtype=float))
    q1, q3 = (float(np.percentile(a, q)) for q in (25, 75))
    iqr, mean, std = q3 - q1, float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
    iqr_out = int(((a < q1 - 1.5 * iqr) | (a > q3 + 1.5 * iqr)).sum())
    std_out = int(((a < mean - std) | (a > mean + std)).sum())
    inside = a[(a >= q1 - 1.5 * iqr) & (a <= q3 + 1.5 * iqr)]
    return {"min": float(a[0]), "max": float(a[-1]), "mean": mean, "stddev": std, "rounds": int(a.size),
            "median": float(np.median(a)), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out,
            "stddev_outliers": std_out, "outliers": f"{std_out};{iqr_out}", "ld15iqr": float(inside[0]),
            "hd15iqr": float(inside[-1]), "ops": 1.0 / mean if mean else 0.0, "total": float(a.sum()),
            "iterations": 1, "data": [float(x) for x in a]}


def pytest_benchmark_document(doc: dict) -> dict:
    """The same run as pytest-benchmark's --benchmark-json (so its compare / histogram tools read it)."""
    env = doc["environment"]
    benches = []
    for rec in doc["records"]:
        if not rec.get("latency_ms") or "samples" not in rec:
            continue
        seconds = [x / 1000.0 for rnd in rec["samples"]["rounds"] for x in rnd["latency_ms"]]
        param = f"{rec['runtime']}-{rec['target']}-b{rec['batch']}"
        benches.append({
            "group": rec["model"], "name": f"{rec['artifact']}[{param}]",
            "fullname": f"edgeopt-bench::{rec['model']}::{rec['artifact']}[{param}]",
            "params": {"runtime": rec["runtime"], "target": rec["target"], "batch": rec["batch"]}, "param": param,
            "extra_info": {k: rec.get(k) for k in ("throughput_ips", "peak_rss_mb", "model_bytes", "normalized_latency")}
                          | {"cold_start_total_ms": (rec.get("cold_start") or {}).get("total_ms")},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1, "max_time": None,
                        "min_time": None, "warmup": True},
            "stats": _pb_stats(seconds)})
    cpu = env["cpu"]
    return {"machine_info": {"node": platform.node(), "processor": platform.processor(), "machine": cpu["arch"],
                             "python_compiler": platform.python_compiler(),
                             "python_implementation": platform.python_implementation(),
                             "python_implementation_version": platform.python_version(),
                             "python_version": env["python"], "python_build": list(platform.python_build()),
                             "release": platform.release(), "system": platform.system(),
                             "cpu": {"brand_raw": cpu["model"], "arch": cpu["arch"], "count": cpu["logical_cores"],
                                     "flags": cpu["flags"]}},
            "commit_info": {"id": None, "dirty": None, "project": "edgeopt"},
            "benchmarks": benches, "datetime": doc["created"], "version": "5.1.0"}


def compact(doc: dict) -> list[dict]:
    """One short row per record (for reports that embed a benchmark, such as `edgeopt demo`)."""
    rows = []
    for r in doc["records"]:
        lat, cold = r.get("latency_ms") or {}, r.get("cold_start") or {}
        rows.append({"artifact": r["artifact"], "runtime": r["runtime"], "target": r["target"], "batch": r["batch"],
                     "cold_start_total_ms": (cold.get("total_ms") or {}).get("median"),
                     "cold_runs": cold.get("runs"), "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"),
                     "throughput_ips": r.get("throughput_ips"), "peak_rss_mb": r.get("peak_rss_mb"),
                     "status": r.get("unavailable") or r.get("error") or "ok"})
    return rows

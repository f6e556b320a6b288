"""The CI regression gate: current records vs a baseline file, noise-robust.

A record regresses only when the whole confidence interval of its slowdown lies beyond the
threshold: ``ci_low(current / baseline) > 1 + max_regression``. The compared metric is per-call
process CPU time by default (time spent descheduled by other processes does not count, so a busy
shared CI machine does not look like a slowdown) or wall-clock latency. Both are divided by the
machine-speed reference measured in the same processes (see warm.py), so a baseline from a
faster or slower machine still compares fairly, and the interval comes from a hierarchical
bootstrap over interleaved rounds (see stats.py), not from one median against one median.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.bench.records import record_key
from edgeopt.bench.stats import Round, ratio_ci


@dataclass
class GateRow:
    key: tuple
    status: str  # ok | regression | improved | new | missing | skipped
    baseline_p50: float | None = None
    current_p50: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""

    def to_json(self) -> dict:
        model, artifact, runtime, target, batch = self.key
        return {"model": model, "artifact": artifact, "runtime": runtime, "target": target, "batch": batch,
                "status": self.status, "baseline_p50_ms": self.baseline_p50, "current_p50_ms": self.current_p50,
                "ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high, "note": self.note}


METRICS = ("latency", "cpu")  # wall-clock per call, or process CPU time per call


def rounds_of(rec: dict, metric: str = "latency") -> list[Round]:
    values, ref = ("latency_ms", "reference_ms") if metric == "latency" else ("cpu_ms", "reference_cpu_ms")
    return [Round(tuple(r[values]), r.get(ref)) for r in (rec.get("samples") or {}).get("rounds", [])
            if r.get(values)]


def compare_record(current: dict, baseline: dict, *, max_regression: float, confidence: float = 0.95,
                   normalize: bool = True, metric: str = "latency") -> GateRow:
    key = record_key(current)
    cur, base = rounds_of(current, metric), rounds_of(baseline, metric)
    if not cur or not base:
        why = "no samples in the current run" if not cur else "no samples in the baseline"
        return GateRow(key, "skipped", note=why)
    both_ref = all(r.reference_ms for r in cur + base)
    ci = ratio_ci(cur, base, normalize=normalize and both_ref, confidence=confidence)
    limit = 1 + max_regression / 100
    status = "regression" if ci["ci_low"] > limit else ("improved" if ci["ci_high"] < 1 / limit else "ok")
    note = f"{metric}, " + ("normalized by machine-speed reference" if ci["normalized"] else "not normalized")
    return GateRow(key, status, baseline["latency_ms"]["p50"], current["latency_ms"]["p50"], ci["ratio"],
                   ci["ci_low"], ci["ci_high"], note)


def compare(current: list[dict], baseline: list[dict], *, max_regression: float, confidence: float = 0.95,
            normalize: bool = True, metric: str = "latency") -> list[GateRow]:
    base = {record_key(r): r for r in baseline if r.get("latency_ms")}
    rows, seen = [], set()
    for rec in current:
        key = record_key(rec)
        seen.add(key)
        if not rec.get("latency_ms"):
            rows.append(GateRow(key, "skipped", note=rec.get("unavailable") or rec.get("error") or "not measured"))
        elif key not in base:
            rows.append(GateRow(key, "new", current_p50=rec["latency_ms"]["p50"], note="not in the baseline"))
        else:
            rows.append(compare_record(rec, base[key], max_regression=max_regression, confidence=confidence,
                                       normalize=normalize, metric=metric))
    rows += [GateRow(k, "missing", baseline_p50=r["latency_ms"]["p50"], note="in the baseline, not in this run")
             for k, r in base.items() if k not in seen]
    return rows


def regressions(rows: list[GateRow]) -> list[GateRow]:
    return [r for r in rows if r.status == "regression"]

"""A benchmark of the regression gate itself (docs/PERFORMANCE.md, "Benchmarking (issue 4)").

    python benchmarks/gate_benchmark.py ARTIFACT [--runs 20] [--slowdown 0.2] [--max-regression 10]

For each of ``--runs`` iterations, three ``run_bench`` runs are made, in rotated order: a fresh
baseline, the same artifact again, and the same artifact with a real slowdown (extra CPU work:
a busy-wait on the thread's CPU clock of ``--slowdown`` x the call's own CPU time, inside every
measured call; see edgeopt.bench.warm.with_slowdown).
The gate compares both against the baseline; the false-alarm rate is how often the unchanged run
is flagged, the detection rate how often the slowed one is. Writes a JSON summary (--out).
"""

from __future__ import annotations

import argparse
import json
import time

from edgeopt.bench.regression import compare
from edgeopt.bench.run import BenchOptions, run_bench

# (metric, normalize by the machine-speed reference); the first is edgeopt bench's default
VARIANTS = (("cpu", True), ("cpu", False), ("latency", True), ("latency", False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--slowdown", type=float, default=0.2)
    ap.add_argument("--max-regression", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="gate-benchmark.json")
    args = ap.parse_args()

    def bench(slowdown: float) -> list[dict]:
        opts = BenchOptions(runtimes=[args.runtime], targets=[args.target], threads=args.threads, cold_runs=0,
                            repeats=args.repeats, seconds=args.seconds, slowdown=slowdown)
        return run_bench(args.artifact, opts)["records"]

    rows, t0 = [], time.time()
    for i in range(args.runs):
        kinds = ["baseline", "same", "slow"]
        kinds = kinds[i % 3:] + kinds[:i % 3]  # rotate so no kind always runs first
        recs = {k: bench(args.slowdown if k == "slow" else 0.0) for k in kinds}
        row = {"run": i + 1, "order": kinds}
        for metric, normalize in VARIANTS:
            name = f"{metric}{'' if normalize else '-raw'}"
            for k in ("same", "slow"):
                g = compare(recs[k], recs["baseline"], max_regression=args.max_regression, metric=metric,
                            normalize=normalize)[0]
                row[f"{name}/{k}"] = {"status": g.status, "ratio": g.ratio, "ci": [g.ci_low, g.ci_high]}
        row["p50_ratio"] = {k: recs[k][0]["latency_ms"]["p50"] / recs["baseline"][0]["latency_ms"]["p50"]
                            for k in ("same", "slow")}
        rows.append(row)
        print(f"run {i + 1:2d}: " + " | ".join(
            f"{key} {v['status'][:4]} {v['ratio']:.2f} [{v['ci'][0]:.2f},{v['ci'][1]:.2f}]"
            for key, v in row.items() if "/" in key), flush=True)
    n = len(rows)
    summary = {"artifact": args.artifact, "runs": n, "slowdown": args.slowdown, "max_regression": args.max_regression,
               "target": args.target, "threads": args.threads, "repeats": args.repeats, "seconds": args.seconds, "minutes": (time.time() - t0) / 60, "variants": {}}
    for metric, normalize in VARIANTS:
        name = f"{metric}{'' if normalize else '-raw'}"
        fa = sum(r[f"{name}/same"]["status"] == "regression" for r in rows)
        det = sum(r[f"{name}/slow"]["status"] == "regression" for r in rows)
        summary["variants"][name] = {"false_alarms": fa, "detections": det, "false_alarm_rate": fa / n,
                                     "detection_rate": det / n}
        print(f"{name:12s}: false alarms {fa}/{n}, detections {det}/{n}")
    summary["rows"] = rows
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{summary['minutes']:.1f} min")


if __name__ == "__main__":
    main()

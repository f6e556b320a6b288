"""Cold start of each ORT-format artifact against the ONNX file it was made from, in fresh processes.

    python benchmarks/mobile_cold_start.py OUT [--cold-runs 20] [--json FILE]

OUT is an export with ``--to onnx,mobile`` (e.g. ``edgeopt export MiniLM --to onnx,mobile --int8``).
Runs ``edgeopt bench OUT --runtime onnxruntime --target mobile`` (the mobile profile: one pinned
core, one thread, a 2 GiB cap; a simulation of a weak core, not a phone), which starts one fresh
process per artifact per round, the artifacts rotated round by round, and reports for each
``.ort`` / ``.onnx`` pair the medians of session load and of process start to first output, and the
median of the per-round ratios (.ort / .onnx). Static-shape variants are left out (their feeds
differ).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EDGEOPT = Path(sys.executable).with_name("edgeopt")


def pairs(out: Path) -> list[tuple[str, str]]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [(a["path"], a["source"]) for a in manifest["artifacts"]
            if a.get("format") == "ort" and not a.get("static_shapes")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cold-runs", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the summary here too")
    args = ap.parse_args()
    found = pairs(args.out)
    if not found:
        sys.exit(f"{args.out}: no .ort artifact; export with --to onnx,mobile")
    with tempfile.TemporaryDirectory() as tmp:
        doc_path = Path(tmp) / "bench.json"
        proc = subprocess.run([str(EDGEOPT), "bench", str(args.out), "--runtime", "onnxruntime", "--target", "mobile",
                               "--cold-runs", str(args.cold_runs), "--repeats", "1", "--seconds", "0.5",
                               "--warmup", "0.2", "--json", str(doc_path)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"edgeopt bench failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        doc = json.loads(doc_path.read_text())
    runs = {r["artifact"]: r["cold_start"]["runs_ms"] for r in doc["records"]}
    summary = {"cold_runs": args.cold_runs, "profile": "mobile (1 pinned core, 1 thread, 2 GiB)", "pairs": []}
    print(f"{'artifact':28} {'load ms':>9} {'vs .onnx':>9} {'total ms':>9} {'vs .onnx':>9}")
    for ort, onnx in found:
        a, b = runs[ort], runs[onnx]
        row = {"ort": ort, "onnx": onnx}
        for phase in ("load_ms", "total_ms"):
            row[phase] = {"ort": statistics.median(r[phase] for r in a), "onnx": statistics.median(r[phase] for r in b),
                          "ratio": statistics.median(x[phase] / y[phase] for x, y in zip(a, b))}
        summary["pairs"].append(row)
        for name, key in ((onnx, "onnx"), (ort, "ort")):
            ratio = "" if key == "onnx" else f"{row['load_ms']['ratio']:.2f}x"
            tratio = "" if key == "onnx" else f"{row['total_ms']['ratio']:.2f}x"
            print(f"{name:28} {row['load_ms'][key]:9.1f} {ratio:>9} {row['total_ms'][key]:9.1f} {tratio:>9}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()

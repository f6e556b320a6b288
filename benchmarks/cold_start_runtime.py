"""Cold start of the device runtime against the floor and stock onnxruntime, in fresh processes.

    python benchmarks/cold_start_runtime.py --export OUT [--rounds 30] [--work DIR] [--json FILE]

OUT is a MiniLM INT8 export (``edgeopt export <all-MiniLM-L6-v2 folder> --int8 -o OUT``, or what
``edgeopt demo`` writes); it must hold ``model.int8.onnx``. The script packages that artifact
(unsigned) and installs it under --work, so the install-time cache (the ORT-format optimized graph
of edgeopt/runtime/ort.py) is in place, as on a device. Then, round after round, in an order
rotated every round, it starts one fresh Python process per candidate and times it from spawn to
the line the child prints after its first output:

- ``floor``: ``import numpy, onnxruntime`` and nothing else;
- ``stock ORT``: the same imports, ``InferenceSession(model.int8.onnx)`` with default options, first run;
- ``edgeopt.runtime``: ``from edgeopt.runtime import load``, ``load(DEST/<name>)`` (checks the files,
  picks the runtime, loads the install-time graph), first ``run``;
- ``edgeopt.runtime, no cache``: the same with ``use_cache=False`` (what the cache is worth);
- ``edgeopt.runtime, no prepack``: the cache, weight prepacking off (faster session creation, and
  maybe slower warm calls: the issue's 20-28 ms idea).

Every first run gets the same 16-token title. Reported: the median of each candidate's times and
the medians of per-round ratios to the floor and to stock ORT (targets, issue 21: edgeopt.runtime
<= 1.25x the floor and <= 0.80x stock). Children report their own phases (import, load, first run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DONE = "edgeopt-cold-done "

PRELUDE = "import time; t0 = time.perf_counter()\n"
FEEDS = ("feeds = {{k: numpy.array([v], dtype=numpy.int64) for k, v in {tokens}.items()}}\n")
REPORT = ("import json; print({done!r} + json.dumps({{'import_ms': (t1 - t0) * 1e3, 'load_ms': (t2 - t1) * 1e3, "
          "'first_run_ms': (t3 - t2) * 1e3}}), flush=True)\n")


def candidates(onnx: Path, installed: Path, tokens: dict) -> dict[str, str]:
    feeds = FEEDS.format(tokens=json.dumps(tokens))
    report = REPORT.format(done=DONE)
    return {
        "floor": PRELUDE + "import numpy, onnxruntime\nt1 = t2 = t3 = time.perf_counter()\n" + report,
        "stock ORT": PRELUDE + "import numpy, onnxruntime\nt1 = time.perf_counter()\n"
        f"s = onnxruntime.InferenceSession({str(onnx)!r}, providers=['CPUExecutionProvider'])\n"
        "t2 = time.perf_counter()\n" + feeds + "s.run(None, feeds)\nt3 = time.perf_counter()\n" + report,
        "edgeopt.runtime": PRELUDE + "import numpy\nfrom edgeopt.runtime import load\nt1 = time.perf_counter()\n"
        f"m = load({str(installed)!r})\nt2 = time.perf_counter()\n" + feeds
        + "m.run(feeds)\nt3 = time.perf_counter()\nassert m.cache.startswith('install-time'), m.cache\n" + report,
        "edgeopt.runtime, no cache": PRELUDE + "import numpy\nfrom edgeopt.runtime import load\n"
        f"t1 = time.perf_counter()\nm = load({str(installed)!r}, use_cache=False)\nt2 = time.perf_counter()\n"
        + feeds + "m.run(feeds)\nt3 = time.perf_counter()\n" + report,
        "edgeopt.runtime, no prepack": PRELUDE + "import numpy\nfrom edgeopt.runtime import load\n"
        f"t1 = time.perf_counter()\nm = load({str(installed)!r}, prepack=False)\nt2 = time.perf_counter()\n"
        + feeds + "m.run(feeds)\nt3 = time.perf_counter()\n" + report,
    }


def prepare(export: Path, work: Path) -> tuple[Path, Path, dict]:
    """Package model.int8.onnx (unsigned) and install it: (artifact, installed folder, tokens)."""
    from edgeopt.bundle.build import package
    from edgeopt.bundle.installation import install
    from edgeopt.runtime.text import TextEncoder

    if not (export / "model.int8.onnx").is_file():
        sys.exit(f"{export} has no model.int8.onnx: export MiniLM with --int8 first")
    work.mkdir(parents=True, exist_ok=True)
    dest = work / f"dest-{time.strftime('%Y%m%d%H%M%S')}"
    bundle = package(out=export, bundle=work / "minilm-int8.edgepkg", artifacts=["model.int8.onnx"],
                     version="1.0").bundle
    installed = install(bundle=bundle, dest=dest, allow_unsigned=True).current.parent
    manifest = json.loads((export / "manifest.json").read_text())
    enc = TextEncoder(export / "tokenizer", 16, [i["name"] for i in manifest["inputs"]])
    feeds = enc(["Nike Men Navy Blue Slim Fit Round Neck T-shirt"])
    return export / "model.int8.onnx", installed, {k: v[0].tolist() for k, v in feeds.items()}


def one_process(code: str, env: dict) -> tuple[float, dict]:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    for line in proc.stdout:
        if line.startswith(DONE):
            total = (time.perf_counter() - t) * 1e3
            proc.wait()
            return total, json.loads(line[len(DONE):])
    proc.wait()
    sys.exit(f"a timing process failed: {proc.stderr.read()[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True, help="MiniLM INT8 export folder (has model.int8.onnx)")
    ap.add_argument("--work", type=Path, default=Path("cold-start-work"))
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", type=Path, help="write the per-round times and the summary here")
    args = ap.parse_args()
    onnx, installed, tokens = prepare(args.export, args.work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    codes = candidates(onnx, installed, tokens)
    names = list(codes)
    for name in names:  # one untimed run each: page cache warm for every candidate alike
        one_process(codes[name], env)
    per: dict[str, list[float]] = {n: [] for n in names}
    phases: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            total, inner = one_process(codes[name], env)
            per[name].append(total)
            phases[name].append(inner)
    summary = {}
    for name in names:
        summary[name] = {
            "total_ms": statistics.median(per[name]),
            "vs_floor": statistics.median(a / b for a, b in zip(per[name], per["floor"])),
            "vs_stock": statistics.median(a / b for a, b in zip(per[name], per["stock ORT"])),
            **{k: statistics.median(p[k] for p in phases[name]) for k in ("import_ms", "load_ms", "first_run_ms")}}
    print(f"{'candidate':30} {'total ms':>9} {'x floor':>8} {'x stock':>8} {'import':>8} {'load':>8} {'1st run':>8}")
    for name, s in summary.items():
        print(f"{name:30} {s['total_ms']:9.1f} {s['vs_floor']:8.3f} {s['vs_stock']:8.3f} {s['import_ms']:8.1f} "
              f"{s['load_ms']:8.1f} {s['first_run_ms']:8.1f}")
    print(f"({args.rounds} rounds, interleaved fresh processes; model {onnx}; installed {installed})")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "per_round_ms": per, "phases": phases}, indent=1))


if __name__ == "__main__":
    main()

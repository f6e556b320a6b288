"""What the report says of each step, read back from the step's output on disk (so a cache hit
reports exactly what the run that built it measured)."""

from __future__ import annotations

import json
from pathlib import Path


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _model(output: Path) -> dict:
    report = json.loads((output / "report.json").read_text()) if (output / "report.json").is_file() else {}
    params = report.get("parameters")  # prune: unpruned / pruned; distill: the student's
    params = params.get("pruned") if isinstance(params, dict) else (report.get("student") or {}).get("parameters")
    quality = report.get("quality")  # distill, prune; update: before / after on old and new data
    if quality is None and "forgetting" in report:
        quality = {k: report.get(k) for k in ("metric", "before", "after", "forgetting", "new_gain", "passed")}
    return {"bytes": _bytes(output), "parameters": params, "quality": quality, "task": report.get("task"),
            "training": report.get("training")}


def _export(output: Path) -> dict:
    manifest = json.loads((output / "manifest.json").read_text())
    arts = [{"path": a["path"], "format": a["format"], "precision": a["precision"], "bytes": a.get("bytes"),
             "verified": (a.get("verification") or {}).get("passed"), "quality": a.get("quality")}
            for a in manifest.get("artifacts", [])]
    return {"bytes": _bytes(output), "artifacts": arts, "model": manifest.get("model", {}).get("name")}


def _bench(output: Path) -> dict:
    from edgeopt.bench.records import compact

    doc = json.loads((output / "bench.json").read_text())
    return {"benchmark": compact(doc)}


def _bundle(output: Path) -> dict:
    from edgeopt.bundle.delta import read_head

    bundle = next(iter(sorted(output.glob("*.edgepkg"))))
    manifest, is_delta = read_head(bundle)
    info = manifest.get("bundle") or {}
    return {"bundle": bundle.name, "bytes": bundle.stat().st_size, "version": manifest.get("version"),
            "signer": info.get("signer"),
            "delta": is_delta, "artifacts": [a["path"] for a in manifest.get("artifacts", [])]}


def summarize(produces: str, output: Path) -> dict:
    return {"model": _model, "export": _export, "bench": _bench, "bundle": _bundle}[produces](output)

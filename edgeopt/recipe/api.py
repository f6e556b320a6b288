"""``edgeopt.run(recipe, ...)``: the whole chain from one recipe file (the CLI calls it too)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.recipe.recipe import LatencyGate, QualityGate, Recipe, load_recipe
from edgeopt.recipe.runner import Runner, StepOutcome, StepPlan


@dataclass
class GateVerdict:
    name: str
    value: float | None
    bound: str
    passed: bool
    detail: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "value": self.value, "bound": self.bound, "passed": self.passed,
                "detail": self.detail}


@dataclass
class RunResult:
    recipe: Recipe
    plan: list[StepPlan]
    steps: list[StepOutcome] = field(default_factory=list)
    gates: list[GateVerdict] = field(default_factory=list)
    report_json: Path | None = None
    report_html: Path | None = None
    document: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failure(self) -> str | None:
        bad = [g for g in self.gates if not g.passed]
        return None if not bad else "; ".join(f"gate {g.name}: {g.value:.4g} not {g.bound}" if g.value is not None
                                              else f"gate {g.name}: {g.detail}" for g in bad)


def _gates(recipe: Recipe, measurements) -> list[GateVerdict]:
    out: list[GateVerdict] = []
    finals = [v for v in measurements.variants if v.final_candidate]
    last = [v for v in finals if v.step == finals[-1].step] if finals else []  # the last export step's
    # its INT8 artifact on onnxruntime, else on another runtime, else its FP32 one
    final = next((v for v in last if v.precision == "int8" and v.runtime == "onnxruntime"),
                 next((v for v in last if v.precision == "int8"), last[0] if last else None))
    if final is None:
        for name in ("quality", "latency"):
            if getattr(recipe, f"{name}_gate") is not None:
                out.append(GateVerdict(name, None, "-", False, "the recipe has no export step: no artifact to gate"))
        return out
    teacher = measurements.by_name("teacher FP32")
    q: QualityGate | None = recipe.quality_gate
    if q is not None:
        ratio = final.quality / teacher.quality if teacher.quality else None
        out.append(GateVerdict("quality", ratio, f">= {q.min_ratio}", ratio is not None and ratio >= q.min_ratio,
                               f"{final.name}: {measurements.metric} {final.quality:.4f} vs the teacher's "
                               f"{teacher.quality:.4f}"))
    lat: LatencyGate | None = recipe.latency_gate
    if lat is not None:
        key = "vs teacher stock INT8" if lat.vs == "teacher-stock-int8" else "vs teacher FP32"
        ratio = final.ratios.get(key)
        out.append(GateVerdict("latency", ratio, f"<= {lat.max_ratio} ({lat.vs})",
                               ratio is not None and ratio <= lat.max_ratio,
                               f"{final.name}: p50 {final.latency_p50_ms:.3f} ms, batch 1"))
    return out


def run(recipe: str | os.PathLike, *, out: str | os.PathLike | None = None, plan_only: bool = False,
        start: str | None = None, only: str | None = None, no_cache: bool = False,
        cache: str | os.PathLike | None = None, measure: bool = True, model: str | os.PathLike | None = None,
        notes: list[str] | None = None, log: Callable[[str], None] = lambda m: None) -> RunResult:
    """Run ``recipe`` (a YAML / JSON file): validate everything first, then each step, from the
    cache where its key matches; measure every variant; write OUT/report.json and report.html.
    ``plan_only``: validate and return the plan (hit / miss per step), loading no model.
    Raises UsageError on bad input before any work; a failed gate is ``result.passed`` False."""
    from edgeopt import __version__
    from edgeopt.errors import UsageError
    from edgeopt.recipe import cache as cache_mod
    from edgeopt.recipe import report

    r = load_recipe(recipe, out=out, model=model)
    if start is not None and only is not None:
        raise UsageError("give --from or --only, not both")
    start_step = r.step(start) if start is not None else None
    only_step = r.step(only) if only is not None else None
    if plan_only:
        runner = Runner(r, cache_dir=Path(cache) if cache else None, no_cache=no_cache, log=log)
        return RunResult(r, runner.plan(start=start_step, only=only_step))
    if r.out.exists() and not r.out.is_dir():
        raise UsageError(f"-o {r.out} is a file; give a folder")
    if r.out.is_dir() and any(r.out.iterdir()) and not (r.out / "report.json").exists() \
            and not (r.out / ".edgeopt-run.lock").exists() and r.out.resolve() not in r.path.resolve().parents:
        raise UsageError(f"-o {r.out} exists and is not an earlier `edgeopt run` output; choose another folder")
    with cache_mod.out_lock(r.out):
        runner = Runner(r, cache_dir=Path(cache) if cache else None, no_cache=no_cache, log=log)
        result = RunResult(r, runner.plan(start=start_step, only=only_step))
        result.steps = runner.run(start=start_step, only=only_step)
        doc = {"recipe": str(r.path), "model": str(r.model), "out": str(r.out), "cache": str(runner.cache.root),
               "created_by": f"edgeopt {__version__}", "versions": cache_mod.versions(), "notes": notes or [],
               "steps": [s.to_json() for s in result.steps]}
        if measure and only_step is None:
            from edgeopt.recipe.measure import measure as measure_all

            with tempfile.TemporaryDirectory(prefix="edgeopt-run-") as work:
                m = measure_all(r, runner, result.steps, Path(work), log)
            doc["measurements"] = m.to_json()
            result.gates = _gates(r, m)
        bench = [s for s in result.steps if s.step.kind.name == "bench" and s.output is not None]
        if bench:
            doc["cold_start"] = report.cold_start_rows(bench[-1].output / "bench.json")
        doc["gates"] = [g.to_json() for g in result.gates]
        doc["passed"] = result.passed
        doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        result.document = doc
        result.report_json, result.report_html = report.write(r.out, doc)
    return result

"""`edgeopt run RECIPE`: the whole chain from one recipe file, cached, resumable, with a report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Output folder [default: the recipe's 'out', else RECIPE's name + '-out' beside it].")
@click.option("--plan", is_flag=True, help="Validate the recipe and print each step with its cache hit or miss; "
              "loads no model, runs nothing.")
@click.option("--from", "start", metavar="STEP", help="Re-run STEP (a name such as prune, or its number) and "
              "every step after it; the steps before it must be cached.")
@click.option("--only", metavar="STEP", help="Run STEP alone (its input must be cached); no measurements.")
@click.option("--no-cache", is_flag=True, help="Ignore cached steps and run every step again (the new outputs "
              "replace the cached ones).")
@click.option("--cache", type=click.Path(path_type=Path), help="Step cache folder, shareable between runs "
              "[default: OUT/.cache].")
@click.option("--no-measure", is_flag=True, help="Skip the side-by-side quality and latency of every variant "
              "(and so the gates).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json (or the plan) on stdout.")
def command(recipe, out, plan, start, only, no_cache, cache, no_measure, as_json):
    """Run RECIPE (YAML or JSON): a teacher checkpoint through distill / prune / update / export /
    bench / package / install steps, each step's output the next one's input.

    \b
    The recipe is validated before any work (unknown keys, types, files, step order).
    Each step is cached by content (its input's bytes, its keys, the data's hashes, the
    library versions): a re-run after Ctrl-C, a kill or a failure starts at the first
    step that is not cached, and a killed distill, prune or update resumes from its last checkpoint.
    Ends with OUT/report.json and OUT/report.html (every variant's quality and latency
    side by side, a quality-versus-latency plot, each gate's verdict).

    Exit 0 when every gate passed, 1 when a gate (or a step's own gate) failed, 2 on bad
    input (nothing run).
    """
    from edgeopt.recipe.api import run

    con = console()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        con.print(f"[dim]{time.perf_counter() - t0:7.1f} s[/dim]  {msg}", highlight=False)

    result = run(recipe, out=out, plan_only=plan, start=start, only=only, no_cache=no_cache, cache=cache,
                 measure=not no_measure, log=log)
    if plan:
        rows = [p.to_json() for p in result.plan]
        if as_json:
            echo_json(json.dumps({"recipe": str(result.recipe.path), "out": str(result.recipe.out), "steps": rows},
                                  indent=2))
            return
        from rich.table import Table

        table = Table(title=f"plan: {result.recipe.path.name} -> {result.recipe.out}")
        for col in ("step", "cache", "key"):
            table.add_column(col)
        for p in result.plan:
            table.add_row(p.step.label, p.status + (f" ({p.why})" if p.why else ""), (p.key or "-")[:16])
        con.print(table)
        return
    if as_json:
        echo_json(json.dumps(result.document, indent=2, default=str))
    else:
        print_summary(con, result)
    if not result.passed:
        from edgeopt.errors import GateError

        raise GateError(result.failure)


def print_summary(con, result) -> None:
    from rich.table import Table

    doc = result.document
    table = Table(title="steps")
    for col in ("step", "cache", "seconds", "output"):
        table.add_column(col)
    for s in doc["steps"]:
        table.add_row(s["step"], s["cache"], f"{s['seconds']:.1f}", s.get("output") or "-")
    con.print(table)
    m = doc.get("measurements")
    if m:
        table = Table(title=f"every variant ({m['metric']}; batch-1 p50 on {m['runtime']})")
        for col in ("variant", m["metric"], "p50 ms", "vs teacher stock INT8"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for v in m["variants"]:
            r = v["latency_ratios"].get("vs teacher stock INT8")
            table.add_row(v["name"], f"{v['quality']:.4f}" if v["quality"] is not None else "-",
                          f"{v['latency_p50_ms']:.3f}" if v["latency_p50_ms"] else "-", f"{r:.3f}x" if r else "-")
        con.print(table)
    for g in result.gates:
        con.print(f"gate {g.name}: {'passed' if g.passed else 'FAILED'} "
                  f"({'-' if g.value is None else f'{g.value:.4f}'} {g.bound}; {g.detail})", highlight=False)
    con.print(f"report: {result.report_html}", highlight=False)

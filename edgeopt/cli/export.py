"""`edgeopt export MODEL`: verified ONNX / OpenVINO / TensorRT artifacts and OUT/manifest.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, load_from_options, model_options


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output folder (default: MODEL name + '-edgeopt').")
@click.option("--to", "targets", default="onnx,openvino", show_default=True,
              help="Comma-separated targets: onnx, openvino, tensorrt.")
@click.option("--fp16", is_flag=True, help="Also write OpenVINO IR with FP16-compressed weights.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="torch.onnx exporter; auto tries the best fit first and falls back to the other.")
@click.option("--threads", type=click.IntRange(1), help="Threads for verification sessions.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
def command(model, out, targets, fp16, exporter, threads, arch, arch_kwargs, trust_pickle, inputs, as_json):
    """Export MODEL, verify every artifact against it, and write OUT/manifest.json.

    Exit 0 when all artifacts match the source within tolerance, 1 when one does not
    (artifacts are kept for inspection, marked failed in the manifest), 2 on bad input.
    """
    from edgeopt.errors import GateError
    from edgeopt.export.pipeline import ExportOptions, export_model

    opts = ExportOptions(targets=tuple(t.strip() for t in targets.split(",") if t.strip()), fp16=fp16,
                         exporter=exporter, threads=threads)
    con = console()
    with con.status("loading model") as status:
        loaded = load_from_options(model, arch, arch_kwargs, trust_pickle, inputs)
        out = out or Path(f"{Path(model).stem or Path(model).name}-edgeopt")
        result = export_model(loaded, out, opts, log=lambda msg: status.update(msg))
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
    else:
        print_artifacts(con, result.manifest, title=f"{loaded.name} -> {out}")
    if not result.passed:
        raise GateError("an artifact does not match the source model within tolerance (see the table)")


def print_artifacts(con, manifest: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("artifact", "precision", "size", "max abs diff", "max rel diff", "cosine min", "verified"):
        table.add_column(col, justify="right" if col not in ("artifact", "verified") else "left",
                         no_wrap=col == "artifact")
    for a in manifest["artifacts"]:
        v = a.get("verification", {})
        ok = "[green]pass[/]" if v.get("passed") else f"[red]FAIL[/] {v.get('error', '')}"
        table.add_row(a["path"], a["precision"], f"{a['bytes'] / 1e6:.1f} MB",
                      f"{v.get('max_abs_diff', float('nan')):.2e}", f"{v.get('max_rel_diff', float('nan')):.2e}",
                      f"{v.get('cosine_min', float('nan')):.6f}", ok)
    con.print(table)

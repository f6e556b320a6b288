"""`edgeopt doctor`: which runtimes and devices are usable here."""

from __future__ import annotations

import json

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(as_json):
    """Show runtimes (onnxruntime, openvino, tensorrt, torch), CPU ISA and GPUs, with install hints."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from edgeopt.doctor import report

    data = report()
    if as_json:
        echo_json(json.dumps(data, indent=2))
        return
    con = Console()
    table = Table(title="runtimes")
    for col in ("runtime", "status", "version", "details / how to get it"):
        table.add_column(col)
    for r in data["runtimes"]:
        if r["available"]:
            extra = {k: v for k, v in r.items() if k not in ("name", "available", "version", "reason", "hint")}
            detail = ", ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in extra.items())
            table.add_row(r["name"], "[green]available[/]", r["version"], escape(detail))
        else:
            table.add_row(r["name"], "[red]unavailable[/]", r["version"] or "-", escape(f"{r['reason']}; {r['hint']}"))
    con.print(table)
    cpu = data["cpu"]
    con.print(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores)")
    con.print(f"ISA: {', '.join(cpu['isa']) or 'none of note'}"
              + ("" if cpu["int8_acceleration"] else "  [yellow](no INT8 dot-product instructions)[/]"))
    gpus = data["gpus"]
    con.print("GPUs: " + (", ".join(f"{g['name']} (sm {g['compute_capability']}, {g['memory']})" for g in gpus)
                          if gpus else "none (no NVIDIA driver / nvidia-smi)"))

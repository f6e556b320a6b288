"""`edgeopt verify-target OUT --arch aarch64`: OUT's artifacts on another CPU, under emulation."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--arch", default="aarch64", show_default=True, type=click.Choice(["aarch64"]),
              help="The target CPU architecture.")
@click.option("--cache", type=click.Path(path_type=Path), metavar="DIR",
              help="Where the target's Python and wheels are installed once [default: ~/.cache/edgeopt/ARCH].")
@click.option("--qemu", type=click.Path(path_type=Path), metavar="PATH",
              help="The qemu user-mode emulator [default: qemu-aarch64 on PATH; 8.1 or newer].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(out, arch, cache, qemu, as_json):
    """Run every ONNX, ORT and OpenVINO artifact of the export folder OUT on ARCH under qemu-user
    (Debian's packages and the runtimes' own wheels for ARCH, installed once into --cache) on the
    golden inputs, compare with this machine's outputs, and record the verdict and the differences
    in OUT/manifest.json. Emulated: necessary, not sufficient; no timings. Exit 0 all within
    tolerance, 1 an artifact differs or does not run there, 2 bad input or no qemu (OUT untouched)."""
    from edgeopt.errors import GateError
    from edgeopt.target.verify import verify_target

    con = console()
    with con.status("checking") as status:
        r = verify_target(out, arch=arch, cache=cache, qemu=qemu, log=lambda m: status.update(m))
    if as_json:
        echo_json(json.dumps({"out": str(r.out), "arch": r.arch, "passed": r.passed, "emulator": r.emulator,
                               "artifacts": r.artifacts}))
    else:
        for path, v in r.artifacts.items():
            if "error" in v:
                detail = v["error"]
            else:
                detail = f"max abs {v['max_abs_diff']:.2e}, cos min {v['cosine_min']:.6f}"
                if "drop" in v:
                    detail += f", {v['gate_metric']} drop {v['drop']:.5f} (max {v['max_drop']})"
            click.echo(f"{'pass' if v['passed'] else 'FAIL'}  {path} on {arch}: {detail}")
        click.echo(f"{arch} under {r.emulator.get('emulator', '?')}: {'all within tolerance' if r.passed else 'FAILED'}"
                   f"; verdict written to {r.out / 'manifest.json'} (emulated: necessary, not sufficient)")
    if not r.passed:
        failed = next(p for p, v in r.artifacts.items() if not v["passed"])
        raise GateError(f"{failed} differs on {arch} beyond its tolerance or does not run there (see {r.out}/manifest.json)")

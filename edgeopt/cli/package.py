"""`edgeopt package OUT -o BUNDLE`: an export folder -> one signed .edgepkg."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("-o", "--bundle", required=True, type=click.Path(path_type=Path), metavar="BUNDLE",
              help="The bundle file to write (NAME.edgepkg).")
@click.option("--sign-key", type=click.Path(path_type=Path), metavar="KEY",
              help="PEM private key from `edgeopt keygen`; without it the bundle is unsigned.")
@click.option("--version", "version", metavar="V", help="Bundle version (PEP 440) [default: UTC time, 2026.12.5.102511].")
@click.option("--artifact", "artifacts", multiple=True, metavar="PATH",
              help="Ship only these artifacts (manifest paths, repeatable) [default: every verified one].")
@click.option("--golden", metavar="FILE.npz", help="Golden inputs for the install-time health check "
              "[default: text models: fixed titles through the tokenizer; others: seeded random inputs].")
@click.option("--bench", metavar="FILE", help="`edgeopt bench --json` output to ship as evidence.")
@click.option("--expires", metavar="WHEN", help="Signed expiry: a date (2027-01-31), time or days (90d); "
              "devices refuse to install it after.")
@click.option("--base", metavar="OLD_BUNDLE", help="Ship a delta against this older full bundle of the same model: only changed files, and for "
              "ONNX weights only the changed tensors; install rebuilds and verifies the full version.")
@click.option("--target", type=click.Choice(["mobile"]), help="mobile: ship the ORT-format artifacts (.ort, from "
              "export --to mobile) and their operator config for a reduced ORT build, nothing else "
              "[default: every verified artifact but the .ort files].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(out, bundle, sign_key, version, artifacts, golden, bench, expires, base, target, as_json):
    """Package the export folder OUT (written by `edgeopt export`) into BUNDLE: the verified artifacts,
    tokenizer, golden inputs/outputs for the device's health check, the evidence, and an OpenSSF
    model-signing signature over every file. Exit 0 written, 1 nothing verified to ship, 2 bad input."""
    from edgeopt.bundle.build import package

    con = console()
    with con.status("packaging") as status:
        r = package(out=out, bundle=bundle, sign_key=sign_key, version=version, artifacts=list(artifacts) or None,
                    golden=golden, bench=bench, expires=expires, base=base, target=target, log=lambda m: status.update(m))
    data = {"bundle": str(r.bundle), "name": r.name, "version": r.version, "artifacts": r.artifacts, "files": r.files,
            "bytes": r.bytes, "signed": r.signed, "key_id": r.key_id, "expires": r.expires, "skipped": r.skipped, "delta": r.delta}
    if as_json:
        echo_json(json.dumps(data))
        return
    for s in r.skipped:
        con.print(f"[yellow]left out[/] {s}")
    click.echo(f"wrote {r.bundle}: {r.name} {r.version}, {', '.join(r.artifacts)} ({r.files} files, "
               f"{r.bytes / 1e6:.1f} MB), " + (f"signed by key {r.key_id[:16]}" if r.signed else "UNSIGNED"))
    if r.delta:
        d = r.delta
        click.echo(f"delta against {d['base_version']}: {d['delta_bytes']:,} bytes vs {d['full_bytes']:,} for the full "
                   f"bundle ({d['ratio']:.2f}x); {d['files_from_base']} file(s) from the base, {d['files_patched']} "
                   f"patched, {d['files_shipped']} shipped whole")

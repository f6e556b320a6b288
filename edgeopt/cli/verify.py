"""`edgeopt verify BUNDLE [--public-key KEY]`: integrity, signature, expiry, and the evidence inside."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), metavar="KEY", help="The signer's PEM public key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(bundle, public_key, as_json):
    """Check every file of BUNDLE (a .edgepkg, or an installed DEST/<name>) against its manifest and,
    with --public-key, its signature; show the evidence it carries. Exit 0 verified, 1 verification failed (tampered, wrong key, expired), 2 bad input."""
    from edgeopt.bundle.verification import verify

    r = verify(bundle=bundle, public_key=public_key)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    click.echo(f"{r.bundle.name}: {r.name} {r.version}, {r.files} files ({r.bytes / 1e6:.1f} MB) match the manifest")
    sig = {"verified": f"signature verified (key {(r.signer or '')[:16]})",
           "not checked": "signed, signature NOT checked: pass --public-key",
           "absent": "UNSIGNED (no model.sig)"}[r.signature]
    click.echo(sig + (f"; expires {r.expires}" if r.expires else ""))
    for a in r.artifacts:
        v = (r.evidence.get("verification") or {}).get(a["path"]) or {}
        q = (r.evidence.get("quality") or {}).get(a["path"])
        detail = f"quality {q.get('metric')} {q.get('value', q.get('mean'))}" if q else \
            (f"max abs diff {v.get('max_abs_diff'):.2g} vs source" if "max_abs_diff" in v else "")
        click.echo(f"  {a['path']} ({a['precision']}): verified at export: {v.get('passed')}  {detail}")
    if "int8_gate" in r.evidence:
        g = r.evidence["int8_gate"]
        click.echo(f"  INT8 gate: {g.get('metric')}, max drop {g.get('max_drop')}: passed {g.get('passed')}")
    if "bench" in r.evidence:
        click.echo(f"  benchmark: {len(r.evidence['bench'].get('summary') or [])} record(s) in evidence/bench.json")
    if r.signature != "verified":
        click.echo("warning: authenticity not checked", err=True)

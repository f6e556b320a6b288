"""`edgeopt keygen -o NAME`: a NIST P-256 signing key pair (NAME.key, NAME.pub) in PEM."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), metavar="NAME",
              help="Writes NAME.key (private, mode 0600: keep it off devices) and NAME.pub (ship this).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(out, as_json):
    """Make a signing key pair for `edgeopt package --sign-key NAME.key`."""
    from edgeopt.bundle.sign import keygen

    r = keygen(out=out)
    if as_json:
        echo_json(json.dumps({"private_key": str(r.private_key), "public_key": str(r.public_key), "key_id": r.key_id}))
        return
    click.echo(f"wrote {r.private_key} (private: sign with it, never ship it) and {r.public_key} (give it to devices)")
    click.echo(f"key id {r.key_id}")

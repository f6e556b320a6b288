"""`edgeopt rollback DEST/NAME`: switch current back to the previous version."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.argument("target", type=click.Path(path_type=Path), metavar="DEST/NAME")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(target, as_json):
    """Point DEST/NAME/current at the previous version (its files are checked first); rolling back
    again returns to the version rolled back from. Exit 0 switched, 2 nothing to roll back to."""
    from edgeopt.bundle.installation import rollback

    r = rollback(target=target)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    click.echo(f"{r.name}: current is now {r.current} (was {r.previous}; `edgeopt rollback` again to return)")

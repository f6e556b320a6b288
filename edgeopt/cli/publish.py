"""`edgeopt publish BUNDLE --repo DIR --keys DIR`: a bundle becomes a signed TUF target."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--repo", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="The repository folder `edgeopt repo init` made.")
@click.option("--keys", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Its role keys (targets, snapshot and timestamp sign a publication).")
@click.option("--channel", default="stable", show_default=True, help="The channel devices follow (--channel).")
@click.option("--rollout", type=float, default=100.0, show_default=True, metavar="PCT",
              help="Percent of devices (by a hash of their id) that take it; raise it with `fleet promote`.")
@click.option("--public-key", type=click.Path(path_type=Path), metavar="KEY",
              help="Verify a full bundle against the signer's public key before publishing it (exit 1 if it fails).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(bundle, repo, keys, channel, rollout, public_key, as_json):
    """Add BUNDLE (a full bundle, or a delta beside its version's full one) to the repository as a
    TUF target; channel and rollout are signed in its custom metadata. Exit 0 published, 1 it fails
    verification (--public-key), 2 bad input."""
    from edgeopt.fleet.publishing import publish

    r = publish(bundle=bundle, repo=repo, keys=keys, channel=channel, rollout=rollout, public_key=public_key)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    rel = r.release
    base = f" (delta from {rel.base})" if rel.base else ""
    click.echo(f"published {rel.model} {rel.version}{base} as {r.target}: {r.length} bytes, channel "
               f"{rel.channel}, rollout {rel.rollout:g} % (targets version {r.targets_version})")

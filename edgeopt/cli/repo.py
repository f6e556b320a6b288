"""`edgeopt repo init|rotate-key|refresh`: the TUF repository that `edgeopt publish` fills."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json

_repo = click.option("--repo", required=True, type=click.Path(path_type=Path), metavar="DIR",
                     help="The repository folder (metadata/ and targets/), served by any static file server.")
_keys = click.option("--keys", required=True, type=click.Path(path_type=Path), metavar="DIR",
                     help="The folder of role keys (root.pem, targets.pem, snapshot.pem, timestamp.pem).")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def _show(r, as_json: bool, what: str) -> None:
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    click.echo(f"{what}: {r.repo} (root version {r.root_version}; signed {', '.join(r.signed)})")
    if r.rotated:
        click.echo(f"key {r.rotated[0][:16]} retired, now {r.rotated[1][:16]}")
    for role, when in r.expires.items():
        click.echo(f"  {role:<9} expires {when}")


@click.group()
def command():
    """A TUF repository of bundles: root, targets, snapshot and timestamp metadata, each signed by
    its own key. Exit 0 done, 2 bad input."""


@command.command("init")
@_repo
@_keys
@click.option("--expiry", multiple=True, metavar="ROLE=N[s|m|h|d]",
              help="How long ROLE's metadata stays valid after each signing (defaults: root=365d, "
                   "targets=90d, snapshot=7d, timestamp=1d). Repeatable.")
@_json
def init_command(repo, keys, expiry, as_json):
    """Make the four role keys in --keys and an empty repository in --repo; provision devices with
    DIR/metadata/root.json."""
    from edgeopt.fleet.keys import parse_expiry
    from edgeopt.fleet.repository import init_repo

    _show(init_repo(repo=repo, keys=keys, expiry=parse_expiry(expiry)), as_json, "initialized")


@command.command("rotate-key")
@click.argument("role", metavar="ROLE", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@_repo
@_keys
@_json
def rotate_command(role, repo, keys, as_json):
    """Replace ROLE's key (a lost laptop, a leaked server): a new root version trusts the new key,
    signed by the old root key as well, so devices follow without re-provisioning."""
    from edgeopt.fleet.repository import rotate_repo_key

    _show(rotate_repo_key(repo=repo, keys=keys, role=role), as_json, f"rotated the {role} key")


@command.command("refresh")
@_repo
@_keys
@_json
def refresh_command(repo, keys, as_json):
    """Sign a new timestamp (and snapshot when due) before the current one expires: run it from cron
    well within the timestamp's expiry, or devices refuse the repository as frozen."""
    from edgeopt.fleet.repository import refresh_repo

    _show(refresh_repo(repo=repo, keys=keys), as_json, "refreshed")

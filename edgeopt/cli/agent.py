"""`edgeopt agent --repo URL --root ROOT.json ...`: keep a device's DEST up to date from a TUF repository."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


def _line(r) -> str:
    if r.status == "installed":
        how = "rolled back" if r.kind == "rollback" else f"installed ({r.kind}, {r.bytes} bytes)"
        text = f"{r.model}: {how}; current {r.current}"
    elif r.status == "failed":
        text = f"{r.model}: {r.version} failed; current {r.current}"
    else:
        text = f"{r.model or '-'}: unchanged; current {r.current}"
    return f"{r.device_id}: {text.replace('current None', 'nothing installed')}" + (f" ({r.error})" if r.error else "")


@click.command()
@click.option("--repo", "repo_url", required=True, metavar="URL",
              help="The repository's base URL (metadata/ and targets/ below it).")
@click.option("--root", required=True, type=click.Path(path_type=Path), metavar="ROOT.json",
              help="The trusted root provisioned with the device (the repository's metadata/root.json).")
@click.option("--public-key", required=True, type=click.Path(path_type=Path), metavar="KEY",
              help="The bundle signer's PEM public key, checked by `install`.")
@click.option("--dest", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Install root, as for `edgeopt install` (and `serve`).")
@click.option("--device-id", required=True, metavar="ID",
              help="This device's stable id; its hash picks its rollout cohort.")
@click.option("--channel", default="stable", show_default=True, help="The channel to follow.")
@click.option("--interval", type=float, default=300.0, show_default=True, metavar="S", help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Poll once and exit: 1 when an install failed or the repository, the "
              "network or the disk did, else 0.")
@click.option("--report-url", metavar="URL",
              help="POST each attempt's report to this http(s) URL (`fleet collect`), or write it into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print each report as one JSON line.")
def command(repo_url, root, public_key, dest, device_id, channel, interval, once, report_url, as_json):
    """Refresh the TUF metadata (python-tuf's client), take the newest release of each model on the
    channel whose rollout covers this device (the delta when its base is installed), install it
    (signature, health check, atomic switch), roll back from a halted one. A failure keeps the
    installed version and is retried with backoff; the agent keeps running until stopped."""
    from edgeopt.fleet.agent import Agent, AgentConfig

    config = AgentConfig(repo_url, root, public_key, dest, device_id, channel, report_url, interval)
    agent = Agent(config, log=lambda m: click.echo(f"{device_id}: {m}", err=True))
    show = (lambda r: echo_json(json.dumps(r.to_json()))) if as_json else (lambda r: click.echo(_line(r)))
    reports = agent.run(once=once, on_report=show)
    if once and (agent.transient_error or any(r.status == "failed" for r in reports)):
        raise click.exceptions.Exit(1)

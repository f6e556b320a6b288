"""`edgeopt fleet status|promote`: where a rollout stands, and raising it (or halting it)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json

_reports = click.option("--reports", required=True, type=click.Path(path_type=Path), metavar="DIR",
                        help="The folder agents report into (--report-url DIR).")


@click.group()
def command():
    """Staged rollouts: how many devices run, failed or wait for each version; promote, or halt."""


@command.command("status")
@_reports
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def status_command(reports, as_json):
    """Per model and version: devices running it, devices that failed to install it, the rest waiting."""
    from edgeopt.bundle.versions import parse_version
    from edgeopt.fleet.reports import read_reports, version_counts

    counts = version_counts(read_reports(reports))
    if as_json:
        echo_json(json.dumps({m: {v: {"running": c.running, "failed": c.failed, "waiting": c.waiting}
                                   for v, c in per.items()} for m, per in counts.items()}))
        return
    if not counts:
        click.echo(f"no reports in {reports}")
    for model, per in sorted(counts.items()):
        click.echo(model)
        for v in sorted(per, key=parse_version, reverse=True):
            c = per[v]
            click.echo(f"  {v:<20} running {c.running:>5}  failed {c.failed:>5}  waiting {c.waiting:>5}")


@command.command("promote")
@click.argument("version")
@click.option("--to", "to", required=True, type=float, metavar="PCT", help="The new rollout percentage.")
@click.option("--repo", required=True, type=click.Path(path_type=Path), metavar="DIR", help="The repository folder.")
@click.option("--keys", required=True, type=click.Path(path_type=Path), metavar="DIR", help="Its role keys.")
@_reports
@click.option("--max-failures", type=float, default=0.0, show_default=True, metavar="PCT",
              help="Halt instead when more than PCT percent of the devices that tried VERSION failed.")
@click.option("--model", metavar="NAME", help="The model, when VERSION is published for several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def promote_command(version, to, repo, keys, reports, max_failures, model, as_json):
    """Raise VERSION's rollout to PCT while its failed share is at most --max-failures; otherwise halt
    it (devices running it roll back). Exit 0 promoted, 1 halted, 2 bad input."""
    from edgeopt.fleet.publishing import promote

    r = promote(repo=repo, keys=keys, reports=reports, version=version, to=to, max_failures=max_failures,
                model=model)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    click.echo(f"promoted {r.model} {r.version} from {r.rollout_before:g} % to {r.rollout:g} % "
               f"({r.failed} of {r.tried} devices that tried it failed)")


@command.command("halt")
@click.argument("version")
@click.option("--repo", required=True, type=click.Path(path_type=Path), metavar="DIR", help="The repository folder.")
@click.option("--keys", required=True, type=click.Path(path_type=Path), metavar="DIR", help="Its role keys.")
@click.option("--reason", required=True, help="Why, signed into the release and shown in the devices' reports.")
@click.option("--model", metavar="NAME", help="The model, when VERSION is published for several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def halt_command(version, repo, keys, reason, model, as_json):
    """Withdraw VERSION: agents stop taking it, and devices running it roll back to their previous
    version at their next poll. Exit 0 halted, 2 bad input."""
    from edgeopt.fleet.publishing import halt

    r = halt(repo=repo, keys=keys, version=version, reason=reason, model=model)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    click.echo(f"halted {r.model} {r.version} at {r.rollout:g} % ({r.reason}); devices running it roll back")


@command.command("collect")
@_reports
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8780, show_default=True, help="Port to listen on.")
def collect_command(reports, host, port):
    """Receive the agents' reports (their --report-url http://HOST:PORT/) and write each into
    --reports for `fleet status` and `fleet promote`. Runs until stopped (Ctrl-C)."""
    from edgeopt.fleet.collector import collector

    server = collector(reports=reports, host=host, port=port)
    click.echo(f"collecting reports on http://{host}:{server.server_address[1]}/ into {reports}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()

"""`edgeopt install BUNDLE --dest DIR`: verify, health-check, switch atomically."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dest", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Install root: the model goes to DIR/<name>/<version>, DIR/<name>/current points at it.")
@click.option("--public-key", type=click.Path(path_type=Path), metavar="KEY", help="The signer's PEM public key.")
@click.option("--allow-downgrade", is_flag=True, help="Install a version older than the current one.")
@click.option("--allow-unsigned", is_flag=True,
              help="Install without checking a signature (an unsigned bundle, or no --public-key).")
@click.option("--max-bytes", type=click.IntRange(min=1), default=16 << 30, show_default=True, metavar="N",
              help="Refuse a bundle that unpacks to more than N bytes (a zip bomb, or a disk too small).")
@click.option("--health-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              metavar="S", help="Seconds the health check (golden inputs in a fresh process) may take.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def command(bundle, dest, public_key, allow_downgrade, allow_unsigned, max_bytes, health_timeout, as_json):
    """Unpack BUNDLE safely, check every file and the signature, refuse downgrades and expired bundles,
    run its golden inputs through the device runtime in a fresh process, then switch DIR/<name>/current
    atomically (the previous version stays for `edgeopt rollback`). Exit 0 installed, 1 verification (tampered,
    truncated, wrong key, expired) or health check failed (current unchanged; the same exit as `edgeopt
    verify` for the same bundle), 2 bad input (current unchanged)."""
    from edgeopt.bundle.installation import install

    con = console()
    with con.status("installing") as status:
        r = install(bundle=bundle, dest=dest, public_key=public_key, allow_downgrade=allow_downgrade,
                    allow_unsigned=allow_unsigned, max_bytes=max_bytes, health_timeout=health_timeout,
                    log=lambda m: status.update(m))
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    h = r.health
    click.echo(f"installed {r.name} {r.version} -> {r.current} (signature {r.signature}; "
               f"health check passed on {h.get('runtime')} with {h.get('artifact')}, "
               f"min cosine {h.get('cosine_min', 0):.6f})" + (f"; previous {r.previous}" if r.previous else ""))

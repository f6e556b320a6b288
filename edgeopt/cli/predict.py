"""`edgeopt predict BUNDLE (--text T | --input F.npz)`: run a model through the device runtime."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import echo_json


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--text", "texts", multiple=True, metavar="T", help="Input text (repeatable; text models only).")
@click.option("--input", "input_file", type=click.Path(path_type=Path), metavar="F.npz",
              help="Feeds: an .npz keyed by input name.")
@click.option("--runtime", type=click.Choice(["onnxruntime", "openvino", "tensorrt"]),
              help="Force a runtime [default: the best present].")
@click.option("--public-key", type=click.Path(path_type=Path), metavar="KEY", help="Also check the signature.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (outputs as lists).")
def command(bundle, texts, input_file, runtime, public_key, as_json):
    """Run BUNDLE (a .edgepkg, an installed DEST/<name>, or an export folder) on --text or --input
    with edgeopt.runtime, as the device does. Exit 0 ran, 2 bad input."""
    from edgeopt.bundle.prediction import predict

    r = predict(bundle=bundle, texts=list(texts), input_file=input_file, runtime=runtime, public_key=public_key)
    if as_json:
        echo_json(json.dumps(r.to_json()))
        return
    m = r.model
    click.echo(f"{m['name']} {m['version'] or ''} via {m['runtime']} ({m['artifact']})", err=True)
    for why in m["fell_back"]:
        click.echo(f"  passed over {why}", err=True)
    for name, arr in r.outputs.items():
        flat = arr.reshape(-1)
        head = ", ".join(f"{x:.4g}" for x in flat[:8].tolist())
        click.echo(f"{name} {list(arr.shape)} {arr.dtype}: [{head}{', ...' if flat.size > 8 else ''}]")

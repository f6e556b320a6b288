"""Options shared by commands that load models (DESIGN.md: Models)."""

from __future__ import annotations

import click


def model_options(f):
    """--arch, --arch-kwargs, --trust-pickle, --input (repeatable)."""
    for decorator in reversed([
        click.option("--arch", metavar="MODULE:FACTORY",
                     help="Build the model for a state dict / safetensors file (module.path:factory or file.py:factory)."),
        click.option("--arch-kwargs", metavar="JSON", help="Keyword arguments for the --arch factory, as a JSON object."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow unpickling a whole pickled module. Only for files you trust: pickles can run code."),
        click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE:DTYPE",
                     help="Input spec, repeatable (image:1x3x224x224:float32). Axis 0 is a dynamic batch axis; "
                          "every number is a fixed size, and an axis is dynamic only where you name it "
                          "(ids:batchxseq:int64)."),
    ]):
        f = decorator(f)
    return f


def load_from_options(model, arch, arch_kwargs, trust_pickle, inputs):
    from edgeopt.models import load_model
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.spec import parse_input

    specs = [parse_input(s) for s in inputs] or None
    return load_model(model, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs), trust_pickle=trust_pickle,
                      inputs=specs)


def console():
    """A rich console on stderr, so --json keeps stdout clean; 120 columns when it is not a
    terminal (CI logs, pipes), where rich would otherwise squeeze tables into 80."""
    import sys

    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 120)

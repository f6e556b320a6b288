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


_JSON_STDOUT = None  # the process's stdout while a --json command runs with sys.stdout on stderr


def echo_json(text: str) -> None:
    """The --json document, on the real stdout: while the command runs, sys.stdout points at stderr
    (LazyGroup.invoke), so whatever a library prints (DeepCTR-Torch prints a version notice when
    imported) cannot corrupt the one JSON document a script reads."""
    import sys

    click.echo(text, file=_JSON_STDOUT or sys.stdout)


def json_to_stdout(argv: list[str]):
    """A context in which print() goes to stderr and echo_json to stdout, when ``argv`` (the
    subcommand and its arguments) asks for JSON on stdout (bench: ``--json -``)."""
    import contextlib
    import sys

    wants = "--json" in argv
    if wants and argv and argv[0] == "bench":  # bench --json FILE writes a file; '-' means stdout
        i = argv.index("--json")
        wants = i + 1 < len(argv) and argv[i + 1] == "-"
    if not wants:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def swapped():
        global _JSON_STDOUT
        _JSON_STDOUT, saved = sys.stdout, sys.stdout
        sys.stdout = sys.stderr
        try:
            yield
        finally:
            sys.stdout, _JSON_STDOUT = saved, None

    return swapped()

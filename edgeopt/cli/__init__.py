"""The `edgeopt` command: a lazy Click group, so `edgeopt --help` imports no heavy library.

Each subcommand lives in its own module and is imported only when invoked. Every EdgeoptError,
and every bad flag or value Click finds, leaves through one path: a one-line message on stderr
and the error's exit code (2 for bad input).
"""

from __future__ import annotations

import importlib
import sys

import click

from edgeopt import __version__
from edgeopt.errors import EdgeoptError

# name -> (module, short help). Commands not built yet live in edgeopt.cli.planned.
COMMANDS = {
    "doctor": ("edgeopt.cli.doctor", "Which runtimes and devices are usable here, and how to get the rest."),
    "export": ("edgeopt.cli.export", "Export a model to ONNX / OpenVINO / TensorRT and verify each artifact."),
    "bench": ("edgeopt.cli.bench", "Cold start, warm latency, throughput and memory; CI regression gate."),
    "distill": ("edgeopt.cli.distill", "Knowledge distillation: a smaller student that keeps the teacher's quality."),
    "prune": ("edgeopt.cli.prune", "Structured / unstructured pruning with recovery; speedup measured on the runtime."),
    "update": ("edgeopt.cli.planned", "Incremental update on new data without forgetting."),
    "package": ("edgeopt.cli.planned", "Build a signed bundle for in-store devices."),
    "verify": ("edgeopt.cli.planned", "Verify a bundle's signature and contents."),
    "install": ("edgeopt.cli.planned", "Install a bundle atomically, keeping the previous version."),
    "rollback": ("edgeopt.cli.planned", "Switch an installed model back to its previous version."),
    "predict": ("edgeopt.cli.planned", "Run a bundle on text or an .npz input."),
    "run": ("edgeopt.cli.planned", "Run the whole chain from a recipe file."),
    "demo": ("edgeopt.cli.demo", "The whole chain on the embedded all-MiniLM-L6-v2, ending in a report."),
}


def abort(message: str, code: int = 2) -> None:
    click.echo(f"edgeopt: error: {message}", err=True)
    sys.exit(code)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, short = COMMANDS[name]
        module = importlib.import_module(module_name)
        if module_name == "edgeopt.cli.planned":
            return module.make(name, short)
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, short + ("" if mod != "edgeopt.cli.planned" else " (not built yet)"))
                for name, (mod, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeoptError as e:
            abort(str(e), e.exit_code)
        except click.UsageError as e:  # a bad flag or value: one line too, not Click's usage block
            path = e.ctx.command_path if e.ctx is not None else "edgeopt"
            abort(f"{e.format_message()} (see '{path} --help')", e.exit_code)
        except KeyboardInterrupt:
            abort("interrupted", 130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeopt")
def main():
    """edgeopt: take trained PyTorch models to edge devices fast, verified and small.

    \b
    Start here:
      edgeopt doctor                     what can run on this machine
      edgeopt export MODEL -o OUT        verified ONNX + OpenVINO IR
      edgeopt demo                       the whole chain on all-MiniLM-L6-v2
    """

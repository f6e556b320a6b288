"""The `edgeopt` command: a lazy Click group, so `edgeopt --help` imports no heavy library.

Each subcommand lives in its own module and is imported only when invoked. Every error leaves
through one path, a one-line message on stderr and an exit code (DESIGN.md): an EdgeoptError or a
bad flag with its own code (2 for bad input, 1 for a failed gate); anything else is a bug, exit 3,
its traceback written to a log file that the line names (`-v` / `--verbose` prints it as well).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from edgeopt import __version__
from edgeopt.errors import EdgeoptError

# name -> (module, short help)
COMMANDS = {
    "doctor": ("edgeopt.cli.doctor", "Which runtimes and devices are usable here, and how to get the rest."),
    "export": ("edgeopt.cli.export", "Export a model to ONNX / OpenVINO / TensorRT and verify each artifact."),
    "bench": ("edgeopt.cli.bench", "Cold start, warm latency, throughput and memory; CI regression gate."),
    "distill": ("edgeopt.cli.distill", "Knowledge distillation: a smaller student that keeps the teacher's quality."),
    "prune": ("edgeopt.cli.prune", "Structured / unstructured pruning with recovery; speedup measured on the runtime."),
    "update": ("edgeopt.cli.update", "Incremental update on new data without forgetting, gated on forgetting."),
    "federate": ("edgeopt.cli.federate", "Federated update across stores on Flower: only weights travel, gated on forgetting."),
    "keygen": ("edgeopt.cli.keygen", "Make a signing key pair (NIST P-256, PEM) for bundles."),
    "package": ("edgeopt.cli.package", "Build a signed bundle for in-store devices."),
    "verify": ("edgeopt.cli.verify", "Verify a bundle's signature and contents."),
    "install": ("edgeopt.cli.install", "Install a bundle atomically, keeping the previous version."),
    "rollback": ("edgeopt.cli.rollback", "Switch an installed model back to its previous version."),
    "repo": ("edgeopt.cli.repo", "A TUF repository of bundles: init, rotate a role key, refresh the timestamp."),
    "publish": ("edgeopt.cli.publish", "Publish a bundle to a TUF repository with a channel and rollout percentage."),
    "agent": ("edgeopt.cli.agent", "Keep a device up to date from a TUF repository (python-tuf client)."),
    "fleet": ("edgeopt.cli.fleet", "Rollout status per version; promote a rollout or halt it on failures."),
    "verify-target": ("edgeopt.cli.verify_target", "Run an export's artifacts on aarch64 under qemu; compare outputs."),
    "predict": ("edgeopt.cli.predict", "Run a bundle on text or an .npz input."),
    "serve": ("edgeopt.cli.serve", "Serve installed models (Open Inference Protocol v2), hot-swapping verified versions."),
    "run": ("edgeopt.cli.run", "Run the whole chain from a recipe file: cached, resumable, with a report."),
    "demo": ("edgeopt.cli.demo", "The whole chain on the embedded all-MiniLM-L6-v2, ending in a report."),
}


def abort(message: str, code: int = 2) -> None:
    click.echo(f"edgeopt: error: {message}", err=True)
    sys.exit(code)


def _log_dir() -> Path:
    """$EDGEOPT_LOG_DIR, else ~/.cache/edgeopt/logs, else the temp folder (a read-only home)."""
    for candidate in (os.environ.get("EDGEOPT_LOG_DIR"), Path.home() / ".cache" / "edgeopt" / "logs",
                      Path(tempfile.gettempdir()) / "edgeopt-logs"):
        if not candidate:
            continue
        try:
            Path(candidate).mkdir(parents=True, exist_ok=True)
            return Path(candidate)
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def report_bug(exc: BaseException, argv: list[str]) -> None:
    """An unexpected error: the traceback goes to a log file, the user gets one line and exit 3."""
    from edgeopt.errors import first_line

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log = _log_dir() / f"edgeopt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.write_text(f"edgeopt {__version__}\nargv: {argv}\n\n{text}", encoding="utf-8")
        where = f"traceback in {log}"
    except OSError:
        where = "the traceback could not be written to a log file; rerun with -v to see it"
    if any(a in ("-v", "--verbose") for a in argv):
        click.echo(text, err=True, nl=False)
    abort(f"unexpected {type(exc).__name__}: {first_line(exc)}. This is a bug in edgeopt; {where} "
          "(-v prints it)", 3)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx, formatter):
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        # the subcommand's arguments, for -v on a bug (ctx.protected_args is deprecated in Click 9)
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]
        from edgeopt.cli.options import json_to_stdout

        try:
            with json_to_stdout(argv):  # --json: stdout holds the one document, whatever libraries print
                return super().invoke(ctx)
        except EdgeoptError as e:
            abort(str(e), e.exit_code)
        except click.UsageError as e:  # a bad flag or value: one line too, not Click's usage block
            path = e.ctx.command_path if e.ctx is not None else "edgeopt"
            abort(f"{e.format_message()} (see '{path} --help')", e.exit_code)
        except KeyboardInterrupt:
            abort("interrupted", 130)
        except (SystemExit, click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as e:  # e.g. click.FileError: the user's input, one line
            abort(e.format_message(), e.exit_code)
        except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit 3
            report_bug(e, argv)


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

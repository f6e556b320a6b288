"""`edgeopt distill`: a smaller student that keeps the teacher's quality, and OUT/report.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json


@click.command()
@click.option("--teacher", required=True, metavar="MODEL", help="The model to distil (any model form edgeopt loads).")
@click.option("--student", metavar="MODEL", help="Your own student model (same inputs; outputs of the same width).")
@click.option("--student-layers", type=int, metavar="N",
              help="Student = N evenly spaced layers of a transformer teacher (e.g. 3 of MiniLM's 6).")
@click.option("--latency-budget", type=float, metavar="X", help="Distil the deepest layer-dropped student whose "
              "exported latency here is at most X times the teacher's (e.g. 0.4); reports every candidate timed.")
@click.option("--data", metavar="DATA", help="Training data (.txt/.jsonl/.csv text, image folder or .csv, .npz, "
              "module:fn). Labels are optional: the teacher labels the rest.")
@click.option("--eval", "eval_data", metavar="DATA", help="Held-out data for the per-epoch evaluation and the report "
              "[default: 10 % held out from --data].")
@click.option("--judgments", metavar="CSV", help="Embedders: also score teacher and student as a store search: "
              "query,document[,relevance] rows; each query against every judged document plus the held-out texts "
              "(Recall@10, NDCG@10).")
@click.option("--min-relevance", type=float, metavar="X", help="With --judgments: relevant when relevance >= X "
              "[default: any positive relevance].")
@click.option("--task", type=click.Choice(["embed", "classify", "binary", "regress"]),
              help="What the model does [default: from the teacher, or classify for labelled class outputs].")
@click.option("--epochs", type=int, default=3, show_default=True, help="Most epochs (early stopping may end sooner).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Samples per step (per process).")
@click.option("--lr", type=float, help="Peak learning rate of AdamW [default: 1e-4 transformers, 1e-3 others].")
@click.option("--patience", type=int, default=2, show_default=True,
              help="Stop after this many epochs without a better evaluation score.")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Weight of the teacher's soft targets against the hard labels (when the data has labels).")
@click.option("--temperature", type=float, default=2.0, show_default=True, help="Softmax temperature of soft targets.")
@click.option("--loss", "embed_loss", type=click.Choice(["mse", "cosine"]), default="mse", show_default=True,
              help="Embedders: match the teacher's pooled embedding by squared distance or cosine.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Classifiers / rankers: image flip, crop and colour jitter; text token masking; feature noise.")
@click.option("--limit", type=int, help="Use at most this many training samples.")
@click.option("--eval-size", type=int, default=1000, show_default=True, help="Most held-out samples evaluated.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Export teacher and student to ONNX and time both in fresh processes for the report.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shuffling, dropout and augmentation.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.checkpoint/ (same command).")
@click.option("--nproc-per-node", type=int, help="Train data-parallel in N processes (torchrun; gloo on CPU).")
@click.option("--teacher-arch", metavar="MODULE:FACTORY", help="Build the teacher for a state dict.")
@click.option("--teacher-arch-kwargs", metavar="JSON", help="Keyword arguments for --teacher-arch.")
@click.option("--student-arch", metavar="MODULE:FACTORY", help="Build the student for a state dict.")
@click.option("--student-arch-kwargs", metavar="JSON", help="Keyword arguments for --student-arch.")
@click.option("--trust-pickle", is_flag=True, help="Allow whole pickled modules (only files you trust).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE:DTYPE", help="Input spec, repeatable; "
              "applies to both models. Numbers are fixed sizes; an axis is dynamic only where named "
              "(ids:batchxseq:int64).")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print each step with the seconds elapsed (on stderr).")
def command(teacher, student, student_layers, latency_budget, data, eval_data, judgments, min_relevance, task, epochs, batch_size, lr, patience,
            alpha, temperature, embed_loss, augment, limit, eval_size, latency, seed, resume, nproc_per_node,
            teacher_arch, teacher_arch_kwargs, student_arch, student_arch_kwargs, trust_pickle, inputs, out, as_json,
            verbose):
    """Distil --teacher into a smaller student trained on --data, and write it to OUT in the
    teacher's family (a sentence-transformers / Hugging Face folder, else OUT/model.pt2), with
    OUT/report.json: teacher vs student on held-out data, parameters, bytes, latency after export.

    Exit 0 on success, 1 when --latency-budget cannot be met, 2 on bad input (nothing written).
    """
    from edgeopt.errors import EdgeoptError, UsageError

    if nproc_per_node is not None and nproc_per_node > 1:
        from edgeopt.distill.launch import current_argv, relaunch, strip_nproc

        sys.exit(relaunch(strip_nproc(current_argv()), nproc_per_node))
    if not data:
        raise UsageError("--data is required: the texts, images or features to distil on")
    from edgeopt.distill import distill
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.spec import parse_input
    from edgeopt.train import distributed

    from edgeopt.cli.stages import stage_log

    con = console()
    quiet = not distributed.is_main()
    log = stage_log(con, verbose, stdout_free=not as_json) if not quiet else (lambda msg: None)  # rank 0 only

    try:
        result = distill(teacher=teacher, data=data, out=out, student=student, student_layers=student_layers,
                         latency_budget=latency_budget, eval_data=eval_data, task=task, epochs=epochs,
                         batch_size=batch_size, lr=lr, alpha=alpha, temperature=temperature, embed_loss=embed_loss,
                         augment=augment, seed=seed, resume=resume, patience=patience, limit=limit,
                         eval_size=eval_size, latency=latency, teacher_arch=teacher_arch,
                         teacher_arch_kwargs=parse_kwargs(teacher_arch_kwargs, "--teacher-arch-kwargs"),
                         student_arch=student_arch,
                         student_arch_kwargs=parse_kwargs(student_arch_kwargs, "--student-arch-kwargs"),
                         trust_pickle=trust_pickle, inputs=[parse_input(s) for s in inputs] or None,
                         judgments=judgments, min_relevance=min_relevance, progress=not quiet, log=log)
    except EdgeoptError as e:
        if quiet:  # rank 0 says it once
            sys.exit(e.exit_code)
        raise
    except KeyboardInterrupt:
        if not quiet:
            from edgeopt.train.checkpoint import interrupted_message

            click.echo(interrupted_message(Path(out)), err=True)
        sys.exit(130)
    finally:
        distributed.shutdown()
    if result.out is None:
        return
    if as_json:
        echo_json(json.dumps(result.report.to_json(), indent=2))
        return
    print_report(con, result.report, result.out)


def print_report(con, report, out: Path) -> None:
    """``report``: an edgeopt.distill.report.DistillReport."""
    from rich.table import Table

    q = report.quality
    table = Table(title=f"{report.task}: teacher vs student on {q.samples} held-out samples")
    for col in ("", "teacher", "student"):
        table.add_column(col, justify="left" if not col else "right")
    for row in report.table_rows():
        table.add_row(*row)
    con.print(table)
    budget = report.latency_budget
    if budget:
        cands = ", ".join(f"{c['layers']} layers {c['ratio']:.2f}x" for c in budget.candidates if "ratio" in c)
        con.print(f"--latency-budget {budget.budget}: measured {cands}; chose {budget.chosen_layers} layers",
                  highlight=False)
    t = report.training
    con.print(f"trained {t.epochs_run} epoch(s) in {t.seconds:.0f} s on {t.processes} process(es); "
              f"best epoch {t.best_epoch}{' (stopped early)' if t.stopped_early else ''}", highlight=False)
    con.print(f"student: {out}   report: {out / 'report.json'}", highlight=False)

"""`edgeopt update`: learn new data without forgetting the old, gated on measured forgetting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json, model_options


@click.command()
@click.argument("model")
@click.option("--data", metavar="DATA", help="New labelled data (.npz with 'labels', .jsonl/.csv text with labels, "
              "image folders). Ids beyond the model's tables grow them to the largest id + 1.")
@click.option("--old-data", metavar="DATA", help="Old data (or a sample of it): forgetting is measured on a held-out "
              "slice; ewc computes its Fisher information and replay draws from the rest.")
@click.option("--method", type=click.Choice(["finetune", "lwf", "ewc", "replay"]), default="lwf", show_default=True,
              help="finetune: plain; lwf: distil the previous model's outputs; ewc: Fisher penalty on old "
              "weights; replay: mix in a stratified sample of old data.")
@click.option("--strength", type=float, help="lwf: distillation weight [1]; ewc: penalty weight [1]; replay: old "
              "samples per new sample [0.5].")
@click.option("--tune", is_flag=True, help="Try several strengths and keep the best on validation slices "
              "(within --max-forgetting).")
@click.option("--max-forgetting", type=float, metavar="X", help="Exit 1 and write nothing when the old-data metric "
              "drops by more than X (metric units: 0.02 = 2 points). Needs --old-data.")
@click.option("--task", type=click.Choice(["classify", "binary", "regress"]),
              help="What the model does [default: from the model, classify for class outputs].")
@click.option("--metric", help="top1, recall@K, mrr@K (classify), auc, logloss, accuracy (binary), mse (regress) "
              "[default: recall@20 above 100 outputs, else top1; auc for binary].")
@click.option("--output-kind", type=click.Choice(["logits", "probs"]), help="--task binary: the model outputs "
              "logits or probabilities (it ends in a sigmoid); picks the loss and the accuracy threshold "
              "[default: probs when every output on the new data lies in [0, 1]].")
@click.option("--eval", "eval_data", metavar="DATA", help="Held-out new data [default: 10 % of --data].")
@click.option("--old-eval", metavar="DATA", help="Held-out old data [default: 10 % of --old-data].")
@click.option("--epochs", type=int, default=3, show_default=True, help="Most epochs (early stopping may end sooner).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, help="Peak learning rate [default: 5e-5 transformers, 1e-3 others].")
@click.option("--replay-limit", type=int, metavar="N", help="replay: at most N old samples.")
@click.option("--eval-size", type=int, default=2000, show_default=True, help="Most held-out samples per slice.")
@click.option("--fisher-samples", type=int, default=512, show_default=True,
              help="ewc: old samples the Fisher information (each weight's importance) is estimated on.")
@click.option("--temperature", type=float, default=2.0, show_default=True,
              help="lwf: softmax temperature of the previous model's soft targets.")
@click.option("--patience", type=int, default=2, show_default=True,
              help="Stop after this many epochs without a better validation score.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.checkpoint/ (same command).")
@click.option("--compact-delta", is_flag=True, help="Move each changed weight (by at most 2^-8 of it) to keep the "
              "previous version's low 16 bits, so a delta bundle (package --base) ships about half the bytes per "
              "changed weight; metrics and the forgetting gate measure the weights as written.")
@model_options
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print each step with the seconds elapsed (on stderr).")
def command(model, data, old_data, method, strength, tune, max_forgetting, task, metric, eval_data, old_eval, epochs,
            batch_size, lr, replay_limit, eval_size, fisher_samples, temperature, patience, seed, resume, compact_delta, output_kind, arch, arch_kwargs, trust_pickle, inputs, out, as_json,
            verbose):
    """Update MODEL on new --data without forgetting what it learnt from --old-data, and write it to
    OUT in its own family (a Hugging Face folder, else OUT/model.pt2) with OUT/report.json: old- and
    new-data metrics before and after, the forgetting, and the compute it took.

    Exit 0 written, 1 it forgot more than --max-forgetting (nothing written), 2 bad input.
    """
    from edgeopt.errors import UsageError
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    if not data:
        raise UsageError("--data is required: the new labelled data to learn")
    con = console()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if verbose:
            con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)

    try:
        result = update(model=model, data=data, out=out, old_data=old_data, method=method, task=task, metric=metric,
                        epochs=epochs, batch_size=batch_size, lr=lr, strength=strength, replay_limit=replay_limit,
                        max_forgetting=max_forgetting, tune=tune, eval_data=eval_data, old_eval=old_eval,
                        eval_size=eval_size, fisher_samples=fisher_samples, temperature=temperature,
                        patience=patience, seed=seed, resume=resume, compact_delta=compact_delta,
                        output_kind=output_kind, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs),
                        trust_pickle=trust_pickle, inputs=[parse_input(s) for s in inputs] or None, log=log)
    except KeyboardInterrupt:
        import sys

        from edgeopt.train.checkpoint import interrupted_message

        click.echo(interrupted_message(Path(out)), err=True)
        sys.exit(130)
    if as_json:
        echo_json(json.dumps(result.report.to_json(), indent=2))
        return
    print_report(con, result.report, result.out)


def print_report(con, r, out: Path) -> None:
    """``r``: an edgeopt.update.report.UpdateReport."""
    from rich.table import Table

    table = Table(title=f"update ({r.method}{'' if r.strength is None else ', strength ' + str(r.strength)}): "
                        "held-out metrics before and after")
    for col in ("data", "metric", "before", "after", "change"):
        table.add_column(col, justify="left" if col in ("data", "metric") else "right")
    for part, before, after in (("old", r.before.old, r.after.old), ("new", r.before.new, r.after.new)):
        if before is None:
            continue
        for name, b in before.items():
            a = after[name]
            table.add_row(part, name, f"{b:.4f}", f"{a:.4f}", f"{a - b:+.4f}")
    con.print(table)
    if r.forgetting is not None:
        gate = "" if r.max_forgetting is None else f" (allowed {r.max_forgetting})"
        con.print(f"forgetting ({r.metric} drop on old data): {r.forgetting:.4f}{gate}", highlight=False)
    for name, g in (r.model.grew or {}).items():
        con.print(f"grew {name}: {g['from']} -> {g['to']} ids", highlight=False)
    c = r.compute
    con.print(f"compute: {c.seconds:.0f} s, {c.train_samples_seen} training samples seen, "
              f"{c.extra_forward_samples} extra forward passes, {c.candidates} candidate(s)", highlight=False)
    con.print(f"model: {out}   report: {out / 'report.json'}", highlight=False)

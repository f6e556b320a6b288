"""`edgeopt prune`: a pruned model whose speedup is measured on the exported runtime, and OUT/report.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json, model_options


@click.command()
@click.argument("model")
@click.option("--ratio", type=float, help="Share removed: of channels / heads / FFN neurons with --structured, "
              "of weights without it (0 < R < 1).")
@click.option("--target-speedup", type=float, metavar="X", help="With --structured: the least pruning whose exported "
              "p50 is <= X times the unpruned model's on --runtime (searched by bisection over the ratio).")
@click.option("--structured", is_flag=True, help="Remove whole channels (CNNs), attention heads and FFN neurons "
              "(transformers), hidden units (MLPs) with torch-pruning; without it: unstructured global magnitude "
              "pruning (a smaller compressed file, no speed on dense runtimes).")
@click.option("--round-to", type=int, metavar="N", help="Keep widths in multiples of N [default: 16 on AVX-512 "
              "CPUs, else 8: the float32 block of the runtimes' kernels].")
@click.option("--head-ratio", type=float, help="Transformers: share of attention heads removed [default: --ratio].")
@click.option("--mac-weight", type=float, default=0.0, show_default=True, metavar="P",
              help="CNNs / MLPs: rank channels by importance / (MACs the channel costs)^P, so expensive "
              "(high-resolution) layers lose more: fewer MACs at the same --ratio (0: importance alone, 1: per MAC).")
@click.option("--data", metavar="DATA", help="Data for importance, held-out quality and recovery (labels optional).")
@click.option("--eval", "eval_data", metavar="DATA", help="Held-out data for quality [default: 10 % of --data].")
@click.option("--task", type=click.Choice(["embed", "classify", "binary", "regress"]),
              help="What the model does [default: from the model, or classify for labelled class outputs].")
@click.option("--recover-epochs", type=int, default=0, show_default=True,
              help="Epochs of recovery: distillation from the unpruned model on --data.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Recovery batch size.")
@click.option("--lr", type=float, help="Recovery learning rate [default: 1e-4 transformers, 1e-3 others].")
@click.option("--runtime", default="onnxruntime", show_default=True,
              type=click.Choice(["onnxruntime", "openvino", "tensorrt"]), help="Runtime the speed is measured on.")
@click.option("--target", default="cpu", show_default=True, help="Bench target profile (as for `edgeopt bench`).")
@click.option("--speed-check/--no-speed-check", default=True, show_default=True,
              help="Export and time unpruned and pruned models; a structured prune that is not faster exits 1.")
@click.option("--limit", type=int, help="Use at most this many samples of --data.")
@click.option("--eval-size", type=int, default=1000, show_default=True,
              help="Most held-out samples quality is measured on.")
@click.option("--importance-samples", type=int, default=256, show_default=True,
              help="Samples of --data the channel / head / neuron importance is estimated on.")
@click.option("--seq-len", type=int, default=32, show_default=True, help="Text models: tokens per timed input.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted recovery from OUT.checkpoint/ (same command).")
@model_options
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print each step with the seconds elapsed (on stderr).")
def command(model, ratio, target_speedup, structured, round_to, head_ratio, mac_weight, data, eval_data, task,
            recover_epochs, batch_size, lr, runtime, target, speed_check, limit, eval_size, importance_samples, seq_len,
            seed, resume, arch, arch_kwargs,
            trust_pickle, inputs, out, as_json, verbose):
    """Prune MODEL and write it to OUT in its input's family (a Hugging Face folder stays a folder,
    with its per-layer widths in config.json; a plain PyTorch model becomes model.pt2) with
    OUT/report.json: widths before / after, parameters, MACs, bytes, the latency ratio measured
    after export, and quality before / after pruning / after recovery.

    Exit 0 on success, 1 when a structured prune is not faster on --runtime (or misses
    --target-speedup), 2 on bad input (nothing written).
    """
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.prune import prune
    from edgeopt.spec import parse_input

    from edgeopt.cli.stages import stage_log

    con = console()
    log = stage_log(con, verbose, stdout_free=not as_json)  # a line per stage with -v, and in a CI log

    try:
        result = prune(model=model, out=out, ratio=ratio, target_speedup=target_speedup, structured=structured,
                       round_to=round_to, head_ratio=head_ratio, mac_weight=mac_weight, data=data,
                       eval_data=eval_data, task=task, recover_epochs=recover_epochs, batch_size=batch_size, lr=lr,
                       runtime=runtime, target=target, speed_check=speed_check, limit=limit, eval_size=eval_size,
                       importance_samples=importance_samples, seq_len=seq_len, seed=seed, resume=resume, arch=arch,
                       arch_kwargs=parse_kwargs(arch_kwargs), trust_pickle=trust_pickle,
                       inputs=[parse_input(s) for s in inputs] or None, progress=not as_json, log=log)
    except KeyboardInterrupt:
        import sys

        from edgeopt.train.checkpoint import interrupted_message

        click.echo(interrupted_message(Path(out)), err=True)
        sys.exit(130)
    if as_json:
        echo_json(json.dumps(result.report.to_json(), indent=2))
        return
    print_report(con, result.report, result.out)


def print_report(con, report, out: Path) -> None:
    """``report``: an edgeopt.prune.report.PruneReport."""
    from rich.table import Table

    widths = Table(title=f"{report.method} pruning: widths per layer")
    for col in ("layer", "before", "after"):
        widths.add_column(col, justify="left" if col == "layer" else "right")
    fmt = lambda w: ", ".join(f"{k} {v}" for k, v in w.items()) if isinstance(w, dict) else str(w)  # noqa: E731
    for name, w in report.widths.items():
        widths.add_row(name, fmt(w["before"]), fmt(w["after"]))
    con.print(widths)
    summary = Table(title="unpruned vs pruned")
    for col in ("", "unpruned", "pruned"):
        summary.add_column(col, justify="left" if not col else "right")
    summary.add_row("parameters", f"{report.parameters.unpruned / 1e6:.3f} M",
                    f"{report.parameters.pruned / 1e6:.3f} M")
    summary.add_row("MACs", f"{report.macs.unpruned / 1e6:.1f} M", f"{report.macs.pruned / 1e6:.1f} M")
    b = report.bytes
    summary.add_row("bytes", f"{b.unpruned / 1e6:.2f} MB", f"{b.pruned / 1e6:.2f} MB")
    if b.pruned_gzip is not None:
        summary.add_row("bytes, gzip", f"{b.unpruned_gzip / 1e6:.2f} MB", f"{b.pruned_gzip / 1e6:.2f} MB")
    for runtime, lat in (report.latency or {}).items():
        ms = lambda d: f"{d['p50_ms']:.2f} ms" if "p50_ms" in d else d.get("error", "-")  # noqa: E731
        ratio = f" ({lat.ratio:.2f}x)" if lat.ratio is not None else ""
        summary.add_row(f"p50 {runtime}", ms(lat.unpruned), ms(lat.pruned) + ratio)
    q = report.quality
    if q:
        for key in q.after_pruning:
            ref = q.before.get(key)
            cells = [f"{s[key]:.4f}" for s in (q.after_pruning, q.after_recovery) if s is not None and key in s]
            summary.add_row(key + (" (pruned / recovered)" if len(cells) > 1 else ""),
                            f"{ref:.4f}" if ref is not None else "1 (reference)", " / ".join(cells))
    con.print(summary)
    if report.note:
        con.print(report.note, highlight=False)
    con.print(f"round-to {report.round_to_reason}; importance: {report.importance}", highlight=False)
    if report.gate:
        con.print(f"speed gate: {'passed' if report.gate.passed else 'failed'}: {report.gate.reason}",
                  highlight=False)
    con.print(f"pruned model: {out}   report: {out / 'report.json'}", highlight=False)

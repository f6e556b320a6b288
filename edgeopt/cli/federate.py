"""`edgeopt federate`: a federated update across stores on Flower's simulation engine, gated on forgetting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json, model_options


@click.command()
@click.argument("model")
@click.option("--stores", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="One .npz per store (the model's inputs by name + labels); NAME.eval.npz beside NAME.npz is "
              "that store's held-out data [default: 10 % of it].")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--strategy", default="fedavg", show_default=True, metavar="NAME",
              help="Flower strategy: fedavg, fedprox or fedadam (embedding rows averaged over the stores that read them).")
@click.option("--local-epochs", type=int, default=1, show_default=True, help="Epochs each store trains per round.")
@click.option("--method", default="finetune", show_default=True, metavar="METHOD",
              help="Each store's update method: finetune or lwf (distil the previous version's outputs).")
@click.option("--strength", type=float, help="lwf: distillation weight [1].")
@click.option("--old-data", metavar="DATA", help="Old data (.npz) the server holds: forgetting is measured on a "
              "held-out slice of it each round and gates the result.")
@click.option("--old-eval", metavar="DATA", help="Held-out old data [default: 10 % of --old-data].")
@click.option("--max-forgetting", type=float, metavar="X", help="Exit 1 and write nothing when the global model's "
              "old-data metric drops by more than X. Needs --old-data.")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="Share of stores sampled per round.")
@click.option("--min-stores", type=int, default=2, show_default=True, help="Stores a round waits for.")
@click.option("--round-timeout", type=float, default=600.0, show_default=True, metavar="S",
              help="Seconds a round waits for replies; stores that fail or do not answer are left out of it.")
@click.option("--proximal-mu", type=float, default=0.01, show_default=True, help="fedprox: the proximal term's mu.")
@click.option("--server-lr", type=float, default=0.01, show_default=True, help="fedadam: the server's step size.")
@click.option("--id-space", type=int, metavar="N", help="Agreed rows of every id table: a store reaching id N or "
              "beyond is refused [default: one past the largest id of any store or the old data].")
@click.option("--dp-clip", type=float, metavar="C", help="Client-side differential privacy (Flower's LocalDpMod): "
              "clip each store's update to L2 norm C and add Gaussian noise; needs --dp-epsilon.")
@click.option("--dp-epsilon", type=float, metavar="E")
@click.option("--dp-delta", type=float, default=1e-5, show_default=True)
@click.option("--wire", type=click.Choice(["full", "rows", "compact"]), help="What each store sends back: every "
              "array (full), dense arrays + only the embedding rows its data read (rows), or rows with each value's "
              "high 16 bits, update --compact-delta's rounding (compact) "
              "[default: rows; full with --dp-clip/--secagg].")
@click.option("--secagg", is_flag=True, help="Secure aggregation with Flower's SecAgg+: the server only sees the "
              "sum of the stores' masked updates (rows still averaged over the stores that read them).")
@click.option("--secagg-shares", type=float, default=1.0, show_default=True, metavar="N",
              help="SecAgg+ shares of each store's secret: a count > 2, or a share (0, 1] of the sampled stores.")
@click.option("--secagg-threshold", type=float, default=0.5, show_default=True, metavar="T",
              help="Shares needed to rebuild a dropped store's mask: a count >= 2, or a share (0, 1] of the shares.")
@click.option("--secagg-clip", type=float, default=8.0, show_default=True, metavar="C",
              help="SecAgg+ clips each store's weighted change to [-C, C] before quantizing it (2**22 levels).")
@click.option("--task", type=click.Choice(["classify", "binary", "regress"]), help="[default: from the model]")
@click.option("--metric", help="top1, recall@K, mrr@K, auc, accuracy, mse [default: as update].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Each store's learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--flower-app", type=click.Path(path_type=Path), metavar="DIR", help="Check everything, then write a "
              "Flower App folder to DIR for the deployment engine (`flwr run DIR` against a SuperLink) instead of "
              "simulating; OUT is then written by the SuperLink's ServerApp.")
@model_options
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print Flower's log and each step (on stderr).")
def command(model, stores, rounds, strategy, local_epochs, method, strength, old_data, old_eval, max_forgetting,
            fraction, min_stores, round_timeout, proximal_mu, server_lr, id_space, dp_clip, dp_epsilon, dp_delta,
            wire, secagg, secagg_shares, secagg_threshold, secagg_clip, task, metric, batch_size, lr, seed, flower_app,
            arch, arch_kwargs, trust_pickle, inputs, out, as_json, verbose):
    """Update MODEL across the stores in DIR with Flower (simulation engine, one SuperNode per store):
    each store trains on its own file, only weights travel, and the server aggregates with
    --strategy. The global model is written to OUT like an update (OUT/model.pt2 + report.json:
    per-round metrics, bytes each way, time).

    Exit 0 written, 1 it forgot more than --max-forgetting (nothing written), 2 bad input.
    """
    from edgeopt.errors import UsageError
    from edgeopt.federate import federate
    from edgeopt.federate.job import Privacy, SecAgg
    from edgeopt.models.arch import parse_kwargs

    if (dp_clip is None) != (dp_epsilon is None):
        raise UsageError("--dp-clip and --dp-epsilon go together: give both for differential privacy, or neither")
    dp = Privacy(clip=dp_clip, epsilon=dp_epsilon, delta=dp_delta) if dp_clip is not None else None
    secure = SecAgg(shares=secagg_shares, threshold=secagg_threshold, clip=secagg_clip) if secagg else None
    con = console()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if verbose:
            con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)

    r = federate(model=model, stores=stores, out=out, rounds=rounds, strategy=strategy, local_epochs=local_epochs,
                 method=method, strength=strength, old_data=old_data, old_eval=old_eval,
                 max_forgetting=max_forgetting, fraction=fraction, min_stores=min_stores, round_timeout=round_timeout,
                 proximal_mu=proximal_mu, server_lr=server_lr, id_space=id_space, dp=dp, secagg=secure, wire=wire,
                 task=task, metric=metric, batch_size=batch_size, lr=lr, seed=seed, arch=arch,
                 arch_kwargs=parse_kwargs(arch_kwargs),
                 trust_pickle=trust_pickle, inputs=list(inputs), verbose=verbose, flower_app=flower_app,
                 log=log)
    if as_json:
        echo_json(json.dumps(r.report, indent=2))
        return
    if flower_app is not None:
        click.echo(f"Flower App for {len(r.report['stores'])} stores in {flower_app}: start a SuperLink and one "
                   f"SuperNode per store (--node-config \"store='PATH'\"), then `flwr run {flower_app} CONNECTION`")
        return
    rep = r.report
    for row in rep["rounds"]:
        ev = row["stores_eval"] or {}
        old = row["old"] or {}
        con.print(f"round {row['round']}: {row['replied']}/{row['sampled']} stores replied; stores' held-out "
                  f"{r.metric} {ev.get(r.metric, float('nan')):.4f}"
                  + (f"; old-data {r.metric} {old[r.metric]:.4f}" if r.metric in old else ""), highlight=False)
    if r.forgetting is not None:
        gate = "" if rep["max_forgetting"] is None else f" (allowed {rep['max_forgetting']})"
        con.print(f"forgetting ({r.metric} drop on old data): {r.forgetting:.4f}{gate}", highlight=False)
    b = rep["bytes"]
    con.print(f"bytes per store per round: {b['down_per_store_per_round']} down, "
              f"{b['up_per_store_per_round']:.0f} up; {rep['seconds']:.0f} s", highlight=False)
    con.print(f"model: {r.out}   report: {r.out / 'report.json'}", highlight=False)

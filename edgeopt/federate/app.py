"""The Flower app: a ClientApp per store and a ServerApp, the same code under Flower's simulation
engine (run.py) and its deployment engine (``flwr run`` against a SuperLink with SuperNodes).

Under simulation the job travels inside the apps (``client_app(job)``, ``server_app(job)``); under
deployment the module-level ``clientapp`` / ``serverapp`` read it from the run config (key
``job``: the Job as JSON, see job.py) and each SuperNode names its store with
``--node-config "store='/path/store.npz'"``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeopt.federate.job import Job

ARRAYS, METRICS, CONFIG = "arrays", "metrics", "config"


def _job(job: Job | None, context) -> Job:
    return job if job is not None else Job.from_json(str(context.run_config["job"]))


def _store(job: Job, context) -> tuple[Path, Path | None]:
    node = context.node_config
    if "store" in node:  # deployment: the SuperNode's own file
        path = Path(str(node["store"]))
        ev = path.with_name(path.name[:-4] + ".eval.npz")
        return path, (ev if ev.exists() else None)
    store = job.stores[int(node["partition-id"])]  # simulation: one SuperNode per store
    return Path(store[1]), (Path(store[2]) if store[2] else None)


_DATA: dict = {}


def _local(job: Job, context):
    import torch

    from edgeopt.federate import local

    torch.set_num_threads(1)  # one store per core; torch's own threads would fight over them
    path, ev = _store(job, context)
    if path not in _DATA:
        _DATA[path] = local.load_store(job.spec, path, ev, job.spec.seed)
    train, held = _DATA[path]
    return local.build(job.spec), train, held


def client_app(job: Job | None = None):
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.clientapp.mod import LocalDpMod

    from edgeopt.federate import local, secagg, wire

    def private(msg, context, call_next):
        """Flower's LocalDpMod when the job asks for it; read per message, so the module-level app
        (deployment, where the job arrives in the run config) applies it too."""
        dp = _job(job, context).dp
        if dp is None:
            return call_next(msg, context)
        return LocalDpMod(dp.clip, dp.sensitivity, dp.epsilon, dp.delta)(msg, context, call_next)

    # Flower's secaggplus_mod on the messages of SecAgg+ (--secagg, else a no-op), then DP (--dp-clip)
    mods = [secagg.secure_mod, private]
    app = ClientApp()

    @app.train(mods=mods)  # DP on the update a store sends; its evaluation replies carry no weights
    def train(msg, context):
        j = _job(job, context)
        built, ds, _ = _local(j, context)
        if secagg.is_legacy(msg):  # --secagg: SecAgg+ runs on Flower's legacy records
            return secagg.train_reply(j, built, ds, msg)
        config = msg.content[CONFIG]
        sent = msg.content[ARRAYS].to_torch_state_dict()
        out = local.train(j.spec, built, sent, ds, j.local, proximal_mu=float(config.get("proximal-mu", 0.0)))
        rows = local.touched_rows(built, ds)
        arrays = wire.encode(j.wire, out["state"], {k: v.numpy() for k, v in sent.items()}, rows)
        content = RecordDict({
            ARRAYS: ArrayRecord(array_dict={k: Array(a) for k, a in arrays.items()}),
            METRICS: MetricRecord({"num-examples": len(ds), "samples-seen": out["samples_seen"],
                                   "train-seconds": out["seconds"]}),
            "rows": ConfigRecord(rows)})
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg, context):
        j = _job(job, context)
        built, _, held = _local(j, context)
        if secagg.is_legacy(msg):
            return secagg.evaluate_reply(j, built, held, msg)
        built.module.load_state_dict(msg.content[ARRAYS].to_torch_state_dict())
        values = local.scores(j.spec, built.module, held)
        return Message(RecordDict({METRICS: MetricRecord({"num-examples": len(held), **values})}), reply_to=msg)

    return app


def server_app(job: Job | None = None, outcome: dict | None = None):
    """``outcome`` (simulation) receives the result or the error instead of it being only logged."""
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp import ServerApp

    from edgeopt.federate import finish, secagg, strategy

    app = ServerApp()

    @app.main()
    def main(grid, context):
        t0 = time.perf_counter()
        try:
            j = _job(job, context)
            ref = finish.Reference.build(j)
            if j.secagg is not None:  # Flower's SecAgg+ workflow (legacy strategies), secagg.py
                result, rounds = secagg.serve(grid, context, j, ref)
            else:
                strat = strategy.make(j.strategy, tables=[t.path for t in ref.built.tables], fraction=j.fraction,
                                      min_stores=j.min_stores, proximal_mu=j.proximal_mu, server_lr=j.server_lr)

                def central(server_round, arrays):
                    values = ref.old_scores(arrays.to_torch_state_dict())
                    return MetricRecord(values) if values else None

                result = strat.start(grid=grid, initial_arrays=ArrayRecord(ref.built.module.state_dict()),
                                     num_rounds=j.rounds, timeout=j.round_timeout, evaluate_fn=central)
                rounds = strat.rounds
            report = finish.finish(j, ref, result, rounds, seconds=time.perf_counter() - t0)
            if outcome is not None:
                outcome["report"] = report
        except Exception as e:  # noqa: BLE001 - handed to the caller; under deployment Flower logs it
            if outcome is None:
                raise
            outcome["error"] = e

    return app


clientapp = client_app()
serverapp = server_app()


def run_config(job: Job) -> dict:
    """The run config ``flwr run`` passes to the module-level apps."""
    return {"job": json.dumps(job.to_json())}

"""Secure aggregation (``--secagg``) on Flower's own SecAgg+: the server learns only the sum of the
stores' masked updates, never one store's.

In flwr 1.42 SecAgg+ exists for the legacy workflow only: ``flwr.server.workflow.SecAggPlusWorkflow``
runs inside ``DefaultWorkflow(fit_workflow=...)`` on a ``LegacyContext`` with a legacy strategy
(``flwr.server.strategy.FedAvg`` / ``FedProx`` / ``FedAdam``), and ``flwr.client.mod.secaggplus_mod``
masks the store's legacy ``FitRes``; the Message-API strategies (``flwr.serverapp.strategy``) have
no secure aggregation. So with ``--secagg`` the ServerApp runs that workflow (``serve``) and the
ClientApp answers in the legacy record format (``train_reply`` / ``evaluate_reply``); app.py routes
by what the message holds, so one app serves both paths under simulation and deployment.

Row-aware averaging survives the masking: a store sends its weight change followed by one 0/1
vector per embedding table (1 = the store read that row). SecAgg+ returns the weighted mean of
everything it is sent, so the mean of those vectors is each row's share of the weight, exactly
what strategy.py's rescaling needs, and it comes out of the secure sum like the weights do.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from edgeopt.federate.strategy import RoundLog

FITINS, EVALINS = "fitins.parameters", "evaluateins.parameters"


def is_legacy(msg) -> bool:
    return FITINS in msg.content.array_records or EVALINS in msg.content.array_records


def secure_mod(msg, context, call_next):
    """Flower's secaggplus_mod for the messages of its protocol, the plain path for the others."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def _state(keys, arrays) -> dict:
    import torch

    return {k: torch.from_numpy(np.array(a)) for k, a in zip(keys, arrays)}


def train_reply(job, built, ds, msg):
    """Train on the global weights of a legacy FitIns; reply with the change and the rows read."""
    from flwr.app import Message
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    from edgeopt.federate import local

    ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    keys = list(built.module.state_dict())
    sent = parameters_to_ndarrays(ins.parameters)
    out = local.train(job.spec, built, _state(keys, sent), ds, job.local,
                      proximal_mu=float(ins.config.get("proximal_mu", 0.0)))
    delta = [out["state"][k].numpy() - s for k, s in zip(keys, sent)]
    read = local.touched_rows(built, ds)
    masks = []
    for t in built.tables:
        m = np.zeros(out["state"][t.path].shape[0], np.float32)
        m[read[t.path]] = 1.0
        masks.append(m)
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(delta + masks), len(ds),
                 {"samples-seen": out["samples_seen"], "train-seconds": out["seconds"]})
    return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)


def evaluate_reply(job, built, held, msg):
    from flwr.app import Message
    from flwr.common import Code, EvaluateRes, Status, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    from edgeopt.federate import local

    ins = compat.recorddict_to_evaluateins(msg.content, keep_input=True)
    built.module.load_state_dict(_state(list(built.module.state_dict()), parameters_to_ndarrays(ins.parameters)))
    values = local.scores(job.spec, built.module, held)
    loss = 1.0 - values[job.spec.metric]  # legacy EvaluateRes wants a loss; the report reads the metrics
    return Message(compat.evaluateres_to_recorddict(EvaluateRes(Status(Code.OK, ""), loss, len(held), values)),
                   reply_to=msg)


def _weighted(pairs):
    total = sum(n for n, _ in pairs)
    return {k: sum(n * float(m[k]) for n, m in pairs) / total for k in pairs[0][1]} if pairs else {}


def _masked_bytes(shapes) -> int:
    """What one store's masked vector weighs on the wire (int64 per entry, plus Flower's weight factor)."""
    from flwr.common import ndarray_to_bytes

    return sum(len(ndarray_to_bytes(np.zeros(s, np.int64))) for s in [(1,), *shapes])


def legacy_strategy(name: str, *, keys: list[str], tables: list[str], initial: list[np.ndarray], fraction: float,
                    min_stores: int, proximal_mu: float, server_lr: float, evaluate_fn):
    """The legacy Flower strategy ``name`` that turns SecAgg+'s mean (weight changes + row shares)
    back into weights, rows averaged over the stores that read them."""
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAdam, FedAvg, FedProx

    index = {keys.index(p): i for i, p in enumerate(tables)}

    class SecureRows(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):
            self._sent = parameters_to_ndarrays(parameters)
            ins = super().configure_fit(server_round, parameters, client_manager)
            self.rounds.append(RoundLog(server_round, sampled=len(ins),
                                        bytes_down_per_store=sum(len(t) for t in parameters.tensors)))
            return ins

        def aggregate_fit(self, server_round, results, failures):
            params, metrics = super().aggregate_fit(server_round, results, failures)
            log = self.rounds[-1]
            log.replied, log.failed = len(results), len(failures)
            if params is None:
                return params, metrics
            mean = parameters_to_ndarrays(params)
            log.bytes_up_per_store = float(_masked_bytes([a.shape for a in mean]))
            weights = [r.num_examples for _, r in results]
            floor = 0.5 * min(weights) / sum(weights)  # below any real share: SecAgg+'s quantization noise
            new = []
            for i, (sent, change) in enumerate(zip(self._sent, mean[:len(keys)])):
                if i in index:
                    share = mean[len(keys) + index[i]]
                    hit = share > floor
                    change = np.where(hit.reshape(-1, *[1] * (change.ndim - 1)), change, 0.0)
                    scale = np.where(hit, 1.0 / np.clip(share, floor, 1.0), 1.0)
                    change = change * scale.reshape(-1, *[1] * (change.ndim - 1))
                    log.rows_rescaled[keys[i]] = int((hit & (share < 1 - floor)).sum())
                new.append((sent + change).astype(sent.dtype))
            return ndarrays_to_parameters(new), metrics

    base = {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}[name]
    rows = SecureRows if base is FedAvg else type(f"SecureRows{base.__name__}", (base, SecureRows), {})

    class Latest(rows):  # on top of the chosen strategy: its global weights after each round, for OUT
        def aggregate_fit(self, server_round, results, failures):
            params, metrics = super().aggregate_fit(server_round, results, failures)
            if params is not None:
                self.latest = parameters_to_ndarrays(params)
            return params, metrics

    kwargs = dict(fraction_fit=fraction, fraction_evaluate=1.0, min_fit_clients=min_stores,
                  min_evaluate_clients=min_stores, min_available_clients=min_stores, evaluate_fn=evaluate_fn,
                  initial_parameters=ndarrays_to_parameters(initial), fit_metrics_aggregation_fn=_weighted,
                  evaluate_metrics_aggregation_fn=_weighted)
    if name == "fedprox":
        kwargs["proximal_mu"] = proximal_mu
    if name == "fedadam":
        kwargs.update(eta=server_lr, eta_l=server_lr)
    strategy = Latest(**kwargs)
    strategy.rounds, strategy.latest = [], list(initial)
    return strategy


class Outcome:
    """What finish.finish reads of a run, filled from the legacy workflow's History."""

    def __init__(self, keys, final, history):
        from flwr.app import ArrayRecord

        def by_round(metrics: dict) -> dict:
            out: dict = {}
            for name, values in metrics.items():
                for r, v in values:
                    if r > 0:
                        out.setdefault(r, {})[name] = v
            return out

        self.arrays = ArrayRecord(_state(keys, final))
        self.train_metrics_clientapp = by_round(history.metrics_distributed_fit)
        self.evaluate_metrics_clientapp = by_round(history.metrics_distributed)
        self.evaluate_metrics_serverapp = by_round(history.metrics_centralized)


def serve(grid, context, job, ref):
    """Run ``job.rounds`` rounds of DefaultWorkflow with SecAggPlusWorkflow; returns (outcome, rounds)."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    state = ref.built.module.state_dict()
    keys = list(state)
    initial = [v.detach().cpu().numpy().copy() for v in state.values()]

    def central(server_round, arrays, config):
        if server_round == 0:
            return None
        values = ref.old_scores(_state(keys, arrays))
        return (1.0 - values[job.spec.metric], values) if values else None

    strategy = legacy_strategy(job.strategy, keys=keys, tables=[t.path for t in ref.built.tables], initial=initial,
                               fraction=job.fraction, min_stores=job.min_stores, proximal_mu=job.proximal_mu,
                               server_lr=job.server_lr, evaluate_fn=central)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=job.rounds, round_timeout=job.round_timeout),
                           strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(**job.secagg.flower(), timeout=job.round_timeout))
    workflow(grid, legacy)
    return Outcome(keys, strategy.latest, legacy.history), strategy.rounds


def report(job) -> dict | bool:
    if job.secagg is None:
        return False
    return {"protocol": "SecAgg+ (flwr SecAggPlusWorkflow + secaggplus_mod)", **asdict(job.secagg),
            "sent": "each store's weight change (clipped to +-clip, quantized) and its rows read, masked"}

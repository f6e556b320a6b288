"""Flower strategies by name, with embedding rows averaged over the stores that touched them.

Flower's FedAvg averages every array over the replying stores, weighted by their samples. For an
embedding table that divides a row one store learned by the total weight of all stores: an item
only one store sells would barely move. Each store therefore also replies with the rows it read
(a ConfigRecord beside its weights), and after Flower's own average this mixin rescales each
touched row's change by the share of the weight that touched it, which is the weighted average
over those stores only. The mixin sits below FedOpt in the method order, so FedAdam's server-side
Adam step works on the corrected average. Bytes each way are counted from the records themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeopt.errors import UsageError

STRATEGIES = ("fedavg", "fedprox", "fedadam")
ROWS = "rows"  # the reply's ConfigRecord: parameter path -> row ids the store read


@dataclass
class RoundLog:
    round: int
    sampled: int = 0
    replied: int = 0
    failed: int = 0
    bytes_down_per_store: int = 0
    bytes_up_per_store: float = 0.0
    rows_rescaled: dict = field(default_factory=dict)


def record_bytes(record) -> int:
    return int(sum(len(a.data) for a in record.values()))


def _expand(reply, sent) -> int:
    """Put the full arrays a store's reply stands for (wire.py) in its place; returns the bytes it sent."""
    from flwr.app import Array, ArrayRecord

    from edgeopt.federate import wire

    rows = dict(reply.content.config_records[ROWS]) if ROWS in reply.content.config_records else {}
    name, record = next(iter(reply.content.array_records.items()))
    got = {k: a.numpy() for k, a in record.items()}
    full = wire.expand(got, {k: a.numpy() for k, a in sent.items()}, rows)
    reply.content[name] = ArrayRecord(array_dict={k: Array(a) for k, a in full.items()})
    return wire.reply_bytes(got, rows)


def make(name: str, *, tables: list[str], fraction: float, min_stores: int, proximal_mu: float = 0.01,
         server_lr: float = 0.01):
    """The Flower strategy ``name`` with row-aware averaging of ``tables`` (parameter paths)."""
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

    if name not in STRATEGIES:
        raise UsageError(f"--strategy {name!r} does not exist; choose one of {', '.join(STRATEGIES)}")

    class RowAverage(FedAvg):
        def configure_train(self, server_round, arrays, config, grid):
            self._sent = arrays
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self.rounds.append(RoundLog(server_round, sampled=len(messages),
                                        bytes_down_per_store=record_bytes(arrays)))
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            ok = [m for m in replies if not m.has_error()]
            log = self.rounds[-1]
            log.replied, log.failed = len(ok), len(replies) - len(ok)
            if ok:
                log.bytes_up_per_store = float(np.mean([_expand(m, self._sent) for m in ok]))
            arrays, metrics = super().aggregate_train(server_round, replies)
            if arrays is None:
                return arrays, metrics
            weights = np.array([float(m.content.metric_records["metrics"][self.weighted_by_key]) for m in ok])
            for path in self.row_tables:
                share = None
                for w, m in zip(weights, ok):
                    rows = m.content.config_records[ROWS][path] if ROWS in m.content.config_records else None
                    if rows is None:  # a store that did not say which rows it read touched them all
                        rows = slice(None)
                    if share is None:
                        share = np.zeros(self._sent[path].shape[0])
                    share[rows] += w
                share /= weights.sum()
                sent, mean = self._sent[path].numpy(), arrays[path].numpy()
                hit = share > 0
                fixed = mean.copy()
                fixed[hit] = sent[hit] + (mean[hit] - sent[hit]) / share[hit].reshape(-1, *[1] * (mean.ndim - 1))
                arrays[path] = type(arrays[path]).from_numpy_ndarray(fixed.astype(mean.dtype))
                log.rows_rescaled[path] = int((hit & (share < 1)).sum())
            return arrays, metrics

    base = {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}[name]
    cls = RowAverage if base is FedAvg else type(f"RowAverage{base.__name__}", (base, RowAverage), {})
    kwargs = dict(fraction_train=fraction, fraction_evaluate=1.0, min_train_nodes=min_stores,
                  min_evaluate_nodes=min_stores, min_available_nodes=min_stores)
    if name == "fedprox":
        kwargs["proximal_mu"] = proximal_mu
    if name == "fedadam":
        kwargs.update(eta=server_lr, eta_l=server_lr)
    strategy = cls(**kwargs)
    strategy.row_tables, strategy.rounds = list(tables), []
    return strategy

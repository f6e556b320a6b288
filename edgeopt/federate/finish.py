"""The server's end of a run: the previous version as the reference, old-data scores each round,
and after the last round update's forgetting gate, the global model written in its input's family
(update/save.py, so it exports and packages like any update) and OUT/report.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeopt.errors import GateError
from edgeopt.federate.job import Job
from edgeopt.federate.local import Built

REPORT = "report.json"


@dataclass
class Reference:
    job: Job
    built: Built
    old_test: object | None  # held-out old data (the forgetting gate's)
    before: dict | None  # the previous version's old-data scores, on its own output columns

    @classmethod
    def build(cls, job: Job) -> "Reference":
        import copy

        from edgeopt.data import load_data
        from edgeopt.federate import local

        built = local.build(job.spec)
        built = copy.copy(built)
        built.module = copy.deepcopy(built.module)  # the server's copy; stores in this process keep theirs
        old_test = None
        if job.old_data:
            io, seed = built.loaded.io, job.spec.seed
            old_test = (load_data(job.old_eval, io=io, seed=seed) if job.old_eval
                        else load_data(job.old_data, io=io, seed=seed).split(0.1, seed=seed)[1])
            if len(old_test) > job.eval_size:
                old_test = old_test.subsample(job.eval_size, seed=seed)
        before = (local.scores(job.spec, built.teacher, old_test, built.old_width) if old_test is not None else None)
        return cls(job, built, old_test, before)

    def old_scores(self, state: dict) -> dict:
        """Old-data scores of a global state and the forgetting so far (empty without --old-data)."""
        from edgeopt.federate import local
        from edgeopt.update import metrics as mt

        if self.old_test is None:
            return {}
        self.built.module.load_state_dict(state)
        values = local.scores(self.job.spec, self.built.module, self.old_test)
        metric = self.job.spec.metric
        return {**values, "forgetting": mt.drop(metric, self.before[metric], values[metric])}


def _records(by_round: dict) -> dict:
    return {int(r): {k: float(v) for k, v in rec.items()} for r, rec in by_round.items()}


def finish(job: Job, ref: Reference, result, rounds: list, *, seconds: float) -> dict:
    """Gate the global model (GateError: nothing written), then write OUT atomically."""
    from edgeopt.atomic import output_dir
    from edgeopt.federate.local import example
    from edgeopt.federate.secagg import report as secure_report
    from edgeopt.update.save import UpdateRecord, save

    spec, built = job.spec, ref.built
    state = result.arrays.to_torch_state_dict()
    after = ref.old_scores(state) if ref.old_test is not None else None
    forgetting = after.pop("forgetting") if after else None
    built.module.load_state_dict(state)
    evaluated = _records(result.evaluate_metrics_clientapp)
    report = {
        "method": job.local.method, "task": spec.task, "metric": spec.metric, "strategy": job.strategy,
        "model": {"source": spec.model, "family": built.loaded.family, "grew": built.grew},
        "stores": [{"name": n, "data": d, "eval": e or "10 % held out"} for n, d, e in job.stores],
        "rounds": [{**asdict(r), "stores_eval": evaluated.get(r.round),
                    "stores_train": _records(result.train_metrics_clientapp).get(r.round),
                    "old": _records(result.evaluate_metrics_serverapp).get(r.round)} for r in rounds],
        "global": {"stores_eval": evaluated.get(max(evaluated)) if evaluated else None},
        "before": {"old": ref.before}, "after": {"old": after},
        "forgetting": forgetting, "max_forgetting": job.max_forgetting,
        "passed": job.max_forgetting is None or forgetting is None or forgetting <= job.max_forgetting,
        "bytes": {"down_per_store_per_round": rounds[0].bytes_down_per_store if rounds else 0,
                  "up_per_store_per_round": (sum(r.bytes_up_per_store for r in rounds) / len(rounds)) if rounds else 0,
                  "total_down": sum(r.bytes_down_per_store * r.sampled for r in rounds),
                  "total_up": sum(r.bytes_up_per_store * r.replied for r in rounds)},
        "privacy": ({"mechanism": "flwr LocalDpMod (client-side clipping + Gaussian noise)", **asdict(job.dp)}
                    if job.dp else None),
        "secure_aggregation": secure_report(job),
        "settings": {"rounds": job.rounds, "fraction": job.fraction, "min_stores": job.min_stores,
                     "round_timeout": job.round_timeout, "wire": job.wire, "local": asdict(job.local),
                     "proximal_mu": job.proximal_mu if job.strategy == "fedprox" else None,
                     "server_lr": job.server_lr if job.strategy == "fedadam" else None, "seed": spec.seed},
        "seconds": round(seconds, 1),
    }
    if not report["passed"]:
        metric = spec.metric
        raise GateError(f"the federated model forgot too much: old-data {metric} {ref.before[metric]:.4f} -> "
                        f"{after[metric]:.4f} (forgetting {forgetting:.4f} > --max-forgetting {job.max_forgetting}); "
                        "nothing written. Try --method lwf, fewer --local-epochs or more stores per round")
    out = Path(job.out)
    with output_dir(out, marker=REPORT) as stage:
        save(built.loaded, built.module, stage, task=spec.task, example=example(built.loaded), width=built.width,
             grew=built.grew, record=UpdateRecord(method=job.local.method, metric=spec.metric, forgetting=forgetting))
        (stage / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report

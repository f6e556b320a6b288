"""``federate``: MODEL + a folder of store files -> the global model Flower's simulation engine
trained across the stores (each on its own data, only weights travelling), gated on forgetting.

Everything the user gave is checked before Flower starts (stores, ids against the agreed space,
strategy, method, Flower itself): bad input exits 2 with nothing written. Then one SuperNode per
store runs the ClientApp (app.py) and the ServerApp aggregates with the chosen strategy
(strategy.py) and writes OUT (finish.py), exactly as under ``flwr run`` on a real fleet.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.errors import GateError, UsageError

REPORT = "report.json"
INSTALL = "pip install 'edgeopt[federate]'"


@dataclass
class FederateResult:
    out: Path
    strategy: str
    metric: str
    forgetting: float | None
    report: dict = field(default_factory=dict)


def require_flower(simulation: bool = True) -> None:
    missing = [m for m in (("flwr", "ray") if simulation else ("flwr",)) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"federate needs Flower{' and its simulation engine' if 'ray' in missing else ''} "
                         f"({', '.join(missing)} not installed): {INSTALL}")


def _spec_text(s) -> str:
    return s if isinstance(s, str) else f"{s.name}:{'x'.join(str(d) for d in s.shape)}:{s.dtype}"


def prepare(*, model, stores, out, old_data=None, old_eval=None, method="finetune", strategy="fedavg",
            task=None, metric=None, id_space=None, arch=None, arch_kwargs=None, trust_pickle=False,
            inputs=None, seed=0, deploy=False, **job_kwargs):
    """Check everything and return the Job (no training, nothing written)."""
    from edgeopt.train import objectives
    from edgeopt.federate import job as jobs
    from edgeopt.federate import local
    from edgeopt.federate.stores import read_stores
    from edgeopt.federate.strategy import STRATEGIES
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input
    from edgeopt.update import metrics as mt

    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy!r} does not exist; choose one of {', '.join(STRATEGIES)}")
    if method not in local.METHODS:
        raise UsageError(f"--method {method!r}: federate trains stores with {' or '.join(local.METHODS)} "
                         "(ewc and replay need the old data at every store)")
    secure = job_kwargs.get("secagg")
    if job_kwargs.get("wire") is None:  # Flower's LocalDpMod and SecAgg+ need whole arrays (wire.py)
        job_kwargs["wire"] = "full" if secure is not None or job_kwargs.get("dp") is not None else "rows"
    jobs.check_wire(job_kwargs["wire"], job_kwargs.get("dp"), secure)  # before Flower is required
    if secure is not None and job_kwargs.get("dp") is not None:
        raise UsageError("--secagg with --dp-clip is not built: a SecAgg+ reply holds weight changes and row masks, "
                         "which Flower's LocalDpMod refuses (it wants back the weights it was sent); choose one")
    if job_kwargs.get("max_forgetting") is not None and old_data is None:
        raise UsageError("--max-forgetting needs --old-data: forgetting is measured on held-out old data")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).exists())):
        raise UsageError(f"-o {out} exists and is not an earlier edgeopt output; choose another folder or empty it")
    for spec, flag in ((old_data, "--old-data"), (old_eval, "--old-eval")):
        if spec is not None and not Path(spec).is_file():
            raise UsageError(f"{flag} {spec} does not exist")
    texts = tuple(_spec_text(s) for s in inputs or ())
    loaded = load_model(model, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle,
                        inputs=[parse_input(s) for s in texts] or None)
    if loaded.module is None or loaded.is_text:
        raise UsageError(f"{loaded.name} is {loaded.family}: federate trains PyTorch models on tensor data (.npz)")
    if metric is not None and task is None:
        task = {"accuracy": "binary", "auc": "binary", "logloss": "binary", "mse": "regress"}.get(metric.lower())
    task = objectives.infer_task(task, loaded, True)
    if task not in ("classify", "binary", "regress"):
        raise UsageError("federate trains on labels: --task classify, binary or regress")
    width = loaded.io.outputs[0].shape[-1] if loaded.io.outputs and len(loaded.io.outputs[0].shape) > 1 else 1
    metric = metric or mt.default(task, width)
    mt.parse(metric, task)
    if job_kwargs.get("max_forgetting") is not None:
        from edgeopt.update.run import _check_forgetting

        _check_forgetting(job_kwargs["max_forgetting"], metric)
    names = loaded.io.input_names
    int_inputs = [s.name for s in loaded.io.inputs if s.dtype.startswith(("int", "uint"))]
    found, rows, labels = read_stores(stores, names=names, int_inputs=int_inputs, id_space=id_space,
                                      labels_are_ids=task == "classify", old=Path(old_data) if old_data else None)
    if secure is not None:
        counts = [x for x in (secure.shares, secure.threshold) if x > 1]
        if counts and max(counts) > len(found):
            raise UsageError(f"--secagg-shares / --secagg-threshold {max(counts):g} exceed the {len(found)} stores")
        # a store's weight over max_weight is its share in SecAgg+'s fixed-point sum: the largest store is 1
        job_kwargs["secagg"] = dataclasses.replace(secure, max_weight=float(max(s.samples for s in found)))
    spec = local.ModelSpec(model=str(model), rows=tuple(sorted(rows.items())), labels=labels, task=task,
                           metric=metric, arch=arch, arch_kwargs=tuple(sorted((arch_kwargs or {}).items())),
                           trust_pickle=trust_pickle, inputs=texts, seed=seed)
    require_flower(simulation=not deploy)  # last: the input is checked (and its errors told) without Flower
    local_cfg = job_kwargs.pop("local", None) or local.LocalConfig(seed=seed)
    return jobs.Job(spec=spec, local=local_cfg, out=str(out), strategy=strategy,
                    stores=tuple((s.name, str(s.data), str(s.eval) if s.eval else None) for s in found),
                    old_data=str(old_data) if old_data else None, old_eval=str(old_eval) if old_eval else None,
                    **job_kwargs)


def simulate(job, *, cpus: int | None = None, verbose: bool = False) -> dict:
    """Run ``job`` on Flower's simulation engine: one SuperNode per store; returns the report."""
    from flwr.simulation import run_simulation

    from edgeopt.federate.app import client_app, server_app

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    outcome: dict = {}
    cpus = cpus or os.cpu_count() or 1
    run_simulation(server_app=server_app(job, outcome), client_app=client_app(job), num_supernodes=len(job.stores),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False,
                                                 "_node_ip_address": "127.0.0.1"}},  # Ray on loopback
                   verbose_logging=verbose)
    error = outcome.get("error")
    if isinstance(error, (GateError, UsageError)):
        raise error
    if error is not None:
        raise RuntimeError(f"the federated run failed: {type(error).__name__}: {error}") from error
    if "report" not in outcome:
        raise RuntimeError("Flower's simulation ended without the server finishing its rounds")
    return outcome["report"]


def federate(*, model: str | Path, stores: str | Path, out: str | Path, rounds: int = 3, strategy: str = "fedavg",
             local_epochs: int = 1, method: str = "finetune", strength: float | None = None, batch_size: int = 64,
             lr: float = 1e-3, old_data: str | Path | None = None, old_eval: str | Path | None = None,
             max_forgetting: float | None = None, fraction: float = 1.0, min_stores: int = 2,
             round_timeout: float = 600.0, proximal_mu: float = 0.01, server_lr: float = 0.01,
             id_space: int | None = None, dp=None, secagg=None, wire: str | None = None, task: str | None = None,
             metric: str | None = None, eval_size: int = 2000, seed: int = 0, arch: str | None = None,
             arch_kwargs: dict | None = None, trust_pickle: bool = False, inputs=None, cpus: int | None = None,
             verbose: bool = False, flower_app: str | Path | None = None,
             log: Callable[[str], None] = lambda m: None) -> FederateResult:
    """Federated update of ``model`` over the stores in ``stores``; see the module docstring.
    ``dp``: a job.Privacy (Flower's LocalDpMod on every store) or None; ``secagg``: a job.SecAgg
    (Flower's SecAgg+, secagg.py) or None. ``wire``: what stores send back (wire.py) [rows; full with
    ``dp`` or ``secagg``]. ``flower_app``: write the
    Flower App folder for the deployment engine there (``flwr run``) instead of simulating."""
    from edgeopt.federate.local import LocalConfig

    local_cfg = LocalConfig(method=method, strength=strength, epochs=local_epochs, batch_size=batch_size, lr=lr,
                            seed=seed)
    from edgeopt.train import TrainConfig

    TrainConfig(epochs=local_epochs, batch_size=batch_size, lr=lr)  # checks the numbers
    job = prepare(model=model, stores=stores, out=out, old_data=old_data, old_eval=old_eval, method=method,
                  strategy=strategy, task=task, metric=metric, id_space=id_space, arch=arch, arch_kwargs=arch_kwargs,
                  trust_pickle=trust_pickle, inputs=inputs, seed=seed, local=local_cfg, rounds=rounds,
                  fraction=fraction, min_stores=min_stores, round_timeout=round_timeout, proximal_mu=proximal_mu,
                  server_lr=server_lr, max_forgetting=max_forgetting, eval_size=eval_size, dp=dp, secagg=secagg,
                  wire=wire,
                  deploy=flower_app is not None)
    if flower_app is not None:
        from edgeopt.federate.deploy import write_app

        folder = write_app(job, flower_app)
        log(f"Flower App for `flwr run` in {folder}")
        return FederateResult(out=Path(out), strategy=strategy, metric=job.spec.metric, forgetting=None,
                              report={"flower_app": str(folder), "stores": [s[0] for s in job.stores]})
    log(f"{len(job.stores)} stores, id space {dict(job.spec.rows)}; {rounds} round(s) of {strategy}")
    report = simulate(job, cpus=cpus, verbose=verbose)
    return FederateResult(out=Path(out), strategy=strategy, metric=job.spec.metric, forgetting=report["forgetting"],
                          report=report)

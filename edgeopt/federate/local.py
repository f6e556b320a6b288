"""One store's side: build the shared model, train it on the store's data with update's methods
and the training core, and measure it on the store's held-out data.

Every process (the server, each store) builds the model the same way: the user's model loaded as
``update`` loads it, its tables grown once to the agreed id space with the same seed (update/grow.py),
so the state dicts line up key for key and row for row. The previous version (grown, untrained) is
kept as the teacher of ``lwf`` and as the reference the forgetting gate measures against.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

METHODS = ("finetune", "lwf")


@dataclass(frozen=True)
class ModelSpec:
    """How to build the shared model; picklable, so it travels to Flower's client processes."""
    model: str
    rows: tuple[tuple[str, int], ...]  # agreed rows per integer input
    labels: int | None  # agreed output columns (classify), None to keep the model's
    task: str
    metric: str
    arch: str | None = None
    arch_kwargs: tuple[tuple[str, object], ...] = ()
    trust_pickle: bool = False
    inputs: tuple[str, ...] = ()  # --input specs, NAME:SHAPE:DTYPE
    output_kind: str = "logits"
    seed: int = 0


@dataclass(frozen=True)
class LocalConfig:
    method: str = "finetune"
    strength: float | None = None
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 2.0
    seed: int = 0


@dataclass
class Built:
    loaded: object
    module: object
    teacher: object
    names: list[str]
    tables: list = field(default_factory=list)  # update.grow.Table of the embedding tables
    grew: dict = field(default_factory=dict)
    old_width: int = 1
    width: int = 1


_CACHE: dict[ModelSpec, Built] = {}


def _load(spec: ModelSpec):
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    return load_model(spec.model, arch=spec.arch, arch_kwargs=dict(spec.arch_kwargs) or None,
                      trust_pickle=spec.trust_pickle, inputs=[parse_input(s) for s in spec.inputs] or None)


def example(loaded) -> dict[str, np.ndarray]:
    """A batch of 2 zeros in the model's input spec (named axes sized 2): the probe that finds the
    tables, the width, and the example update/save.py exports with."""
    return {s.name: np.zeros([d if isinstance(d, int) else 2 for d in s.shape], dtype=s.dtype)
            for s in loaded.io.inputs}


def build(spec: ModelSpec) -> Built:
    """The grown model for ``spec`` (cached per process: a store's client keeps it between rounds)."""
    if spec in _CACHE:
        return _CACHE[spec]
    from edgeopt.train.batches import forward, tensors
    from edgeopt.models.trainable import set_mode, trainable
    from edgeopt.update import grow as growing

    loaded = _load(spec)
    names = loaded.io.input_names
    width = loaded.io.outputs[0].shape[-1] if loaded.io.outputs and len(loaded.io.outputs[0].shape) > 1 else 1
    module = trainable(loaded)
    probe = example(loaded)
    tables = growing.find_tables(module, names, tensors(probe, names), width)
    label_max = spec.labels - 1 if spec.labels is not None else None
    grew = growing.grow(module, tables, {n: r - 1 for n, r in spec.rows}, label_max, seed=spec.seed)
    teacher = copy.deepcopy(module)
    set_mode(teacher, False)
    for p in teacher.parameters():
        p.requires_grad_(False)
    new_width = int(forward(module, probe, names).shape[-1])
    built = Built(loaded, module, teacher, names, [t for t in tables if t.kind == "embedding"], grew,
                  width if isinstance(width, int) else new_width, new_width)
    _CACHE[spec] = built
    return built


def load_store(spec: ModelSpec, path, eval_path, seed: int):
    """(train, held-out) datasets of one store: its .eval.npz, else 10 % held out."""
    from edgeopt.data import load_data

    io = _CACHE[spec].loaded.io if spec in _CACHE else _load(spec).io
    ds = load_data(path, io=io, seed=seed)
    if eval_path is not None:
        return ds, load_data(eval_path, io=io, seed=seed)
    return ds.split(0.1, seed=seed)  # stores.py refused stores too small for this


def touched_rows(built: Built, ds) -> dict[str, list[int]]:
    """Rows of each embedding table that the store's data reads (the only rows its training moves)."""
    out = {}
    for t in built.tables:
        ids = np.unique(np.concatenate([s[t.input].reshape(-1) for s in ds.samples]))
        out[t.path] = [int(i) for i in ids]
    return out


def scores(spec: ModelSpec, module, ds, columns: int | None = None) -> dict[str, float]:
    from edgeopt.update import metrics as mt
    from edgeopt.train.outputs import column_outputs

    names = _CACHE[spec].names
    return mt.all_values(spec.metric, spec.task, column_outputs(module, ds, names)[..., :columns], ds.labels,
                         spec.output_kind)


def train(spec: ModelSpec, built: Built, state: dict, ds, cfg: LocalConfig, proximal_mu: float = 0.0) -> dict:
    """Train the store's copy from the global ``state``; returns its state dict and what it did.
    ``proximal_mu`` > 0 adds FedProx's term mu/2 * ||w - w_global||^2."""
    import torch

    from edgeopt.train.batches import collate, forward
    from edgeopt.models.trainable import set_mode
    from edgeopt.train import TrainConfig, cached_outputs, fit
    from edgeopt.train.checkpoint import fingerprint
    from edgeopt.update import methods

    t0 = time.perf_counter()
    module, names = built.module, built.names
    module.load_state_dict(state)
    anchor = [p.detach().clone() for p in module.parameters()] if proximal_mu > 0 else None
    labels = torch.from_numpy(np.asarray(ds.labels))
    strength = cfg.strength if cfg.strength is not None else methods.DEFAULT_STRENGTH[cfg.method]
    t_out = None
    if cfg.method == "lwf":
        def run_teacher(idx):
            with torch.inference_mode():
                return forward(built.teacher, collate(ds, idx), names)[..., :built.old_width].float().numpy()
        t_out = cached_outputs(run_teacher, len(ds), batch=256)

    def loss_fn(m, idx, gen):
        o = forward(m, collate(ds, idx), names)
        loss = methods.hard_loss(spec.task, o, labels[idx], spec.output_kind)
        if t_out is not None:
            loss = loss + strength * methods.lwf_loss(spec.task, o, torch.from_numpy(t_out[idx]), cfg.temperature,
                                                      spec.output_kind)
        if anchor is not None:
            loss = loss + proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(module.parameters(), anchor))
        return loss

    tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0, warmup=0.0,
                     patience=cfg.epochs, seed=cfg.seed, progress=False)
    res = fit(module, n_samples=len(ds), loss_fn=loss_fn, cfg=tc,
              fingerprint=fingerprint(method=cfg.method, strength=strength, samples=len(ds)))
    set_mode(module, False)
    return {"state": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "samples_seen": res.epochs_run * len(ds), "seconds": time.perf_counter() - t0}

"""``fit``: the one training loop of edgeopt (distill, prune recovery and update call it).

AdamW with linear warm-up and decay, evaluation after every epoch with early stopping on the
evaluation score (the best epoch's weights are kept), a checkpoint after every epoch for
``resume``, and data-parallel training under torchrun. Randomness is derived from (seed, epoch,
step, rank) instead of flowing from one stream, so a resumed run computes what an uninterrupted
one would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.train import checkpoint, distributed


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32  # per process
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of all steps spent warming up
    patience: int = 2  # epochs without a better evaluation score before stopping
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise UsageError(f"warm-up share must be in [0, 1), got {self.warmup}")
        if self.patience < 1:
            raise UsageError(f"--patience must be >= 1, got {self.patience}")
        if self.resume and self.checkpoint_dir is None:
            raise UsageError("--resume needs a checkpoint folder")


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_score: float | None
    stopped_early: bool
    resumed_at_epoch: int | None
    seconds: float
    history: list[dict] = field(default_factory=list)
    processes: int = 1

    def to_json(self) -> dict:
        return {"epochs_run": self.epochs_run, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "stopped_early": self.stopped_early, "resumed_at_epoch": self.resumed_at_epoch,
                "seconds": round(self.seconds, 1), "processes": self.processes, "history": self.history}


def step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def shard(n: int, seed: int, epoch: int, rank: int, world: int, lengths: np.ndarray | None = None,
          batch: int = 32) -> np.ndarray:
    """This rank's sample order for an epoch: one shuffle for all ranks, padded by wrapping around
    so every rank takes the same number of steps (as torch's DistributedSampler does). With
    ``lengths``, samples of similar length share a batch (sorted within chunks of 50 batches, the
    batches then shuffled), so padded text batches waste little compute."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    total = math.ceil(n / world) * world
    order = np.concatenate([order, order[:total - n]]) if total > n else order
    mine = order[rank::world]
    if lengths is None:
        return mine
    chunk = batch * 50
    chunks = np.split(mine, range(chunk, len(mine), chunk))
    mine = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    batches = np.split(mine, range(batch, len(mine), batch))
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


def _optimizer(module, cfg: TrainConfig, total_steps: int):
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # weights decay; biases and norms do not
    rest = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    warm = int(total_steps * cfg.warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=Console(stderr=True), disable=not enabled,
                    transient=True)


def fit(module, *, n_samples: int, loss_fn: Callable, cfg: TrainConfig, fingerprint: dict,
        evaluate: Callable[[object], dict] | None = None, on_epoch_end: Callable[[int], None] | None = None,
        lengths: np.ndarray | None = None, log: Callable[[str], None] = lambda m: None) -> TrainResult:
    """Train ``module`` in place.

    ``loss_fn(model, indices, generator)`` returns the loss of the samples ``indices`` (``model``
    is the DDP wrapper under torchrun: call it, not ``module``). ``evaluate(module)`` returns a
    dict with ``score`` (higher is better) and any other numbers to record per epoch. ``lengths``
    (per sample, e.g. token counts) batches samples of similar length together.
    """
    import torch

    from edgeopt.models.trainable import set_mode

    rank, world = distributed.setup()
    t0 = time.perf_counter()
    model = distributed.wrap(module, probe=lambda m: loss_fn(m, np.arange(min(n_samples, cfg.batch_size)),
                                                          torch.Generator().manual_seed(cfg.seed)))
    steps_per_epoch = math.ceil(math.ceil(n_samples / world) / cfg.batch_size)
    opt, sched = _optimizer(module, cfg, steps_per_epoch * cfg.epochs)
    start, history, best_score, best_epoch, best_state, bad = 0, [], None, -1, None, 0
    resumed = None
    if cfg.resume:
        state = checkpoint.load(cfg.checkpoint_dir, fingerprint)
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history = state["epoch"] + 1, state["history"]
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        best_state, bad = state["best_state"], state["bad"]
        resumed = start
        log(f"resuming at epoch {start + 1} of {cfg.epochs}")
    stopped = bad >= cfg.patience
    with _progress(cfg.progress and rank == 0) as bar:
        for epoch in range(start, cfg.epochs):
            if stopped:
                break
            torch.manual_seed(step_seed(cfg.seed, epoch, rank))  # dropout
            order = shard(n_samples, cfg.seed, epoch, rank, world, lengths, cfg.batch_size)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, info="")
            set_mode(module, True)
            losses = []
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                gen = torch.Generator().manual_seed(step_seed(cfg.seed, epoch, step, rank))
                loss = loss_fn(model, idx, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, info=f"loss {np.mean(losses[-50:]):.4g}")
            bar.remove_task(task)
            set_mode(module, False)
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": float(sched.get_last_lr()[0])}
            if evaluate is not None:
                row.update(evaluate(module))
            history.append(row)
            score = row.get("score", -row["loss"])
            if best_score is None or score > best_score:
                best_score, best_epoch, bad = score, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                bad += 1
            stopped = bad >= cfg.patience and epoch + 1 < cfg.epochs
            if cfg.checkpoint_dir is not None and rank == 0:  # saved before the epoch is reported done
                checkpoint.save(cfg.checkpoint_dir, {
                    "epoch": epoch, "model": module.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "history": history, "best_score": best_score,
                    "best_epoch": best_epoch, "best_state": best_state, "bad": bad, "fingerprint": fingerprint})
            log(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                    if k != "epoch" and isinstance(v, float)))
            distributed.barrier()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    if best_state is not None:
        module.load_state_dict(best_state)
    set_mode(module, False)
    return TrainResult(epochs_run=len(history), best_epoch=best_epoch, best_score=best_score,
                       stopped_early=stopped, resumed_at_epoch=resumed, seconds=time.perf_counter() - t0,
                       history=history, processes=world)

"""``update``: a trained model + new data (+ old data) -> the model updated on the new data, gated
on how much it forgot of the old, and OUT/report.json.

Named stages over the training core (edgeopt.train): ``_check``, ``_load`` and ``_read_data`` read
and check everything first; ``_prepare`` grows embedding / output tables for ids the model has not
seen (grow.py) and keeps the previous model as the teacher; the old- and new-data metric is
measured before; ``_train`` trains with ``edgeopt.train.fit`` and the method's extra loss
(methods.py), optionally trying several strengths on validation slices (``tune``); the metric is
measured again on held-out slices; the gate refuses (GateError, nothing written) when the
old-data metric dropped by more than ``max_forgetting``; else ``_write`` writes OUT atomically in
the input's family (a Hugging Face folder stays one, anything else becomes OUT/model.pt2 + model.json).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import GateError, UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.train import TrainResult
from edgeopt.train.outputs import column_outputs
from edgeopt.update.report import (Candidate, Compute, Scores, UpdateData, UpdatedModel, UpdateReport,
                                   UpdateSettings)


@dataclass
class UpdateResult:
    out: Path | None  # None when the gate failed (nothing written)
    method: str
    task: str
    metric: str
    forgetting: float | None
    report: UpdateReport


@dataclass
class _Data:
    """The new (and old) data: held-out slices for the report, fit / validation slices for training."""
    task: str
    metric: str
    width: object  # the model's output columns as its I/O spec says (an int, or a named dynamic axis)
    new_train: object  # edgeopt.data Dataset
    new_eval: object
    new_fit: object
    new_val: object | None
    old_train: object | None = None
    old_test: object | None = None
    old_fit: object | None = None
    old_val: object | None = None


@dataclass
class _Models:
    module: object  # the torch module being updated (tables grown)
    frozen: object  # the previous model, unchanged (EWC's anchor)
    teacher: object  # the previous model with its tables grown, untrained: the reference of LwF and "before"
    grew: dict
    new_width: int
    old_width: int
    output_kind: str | None  # binary models: "logits" or "probs"


@dataclass
class _Training:
    chosen: float | None  # the strength kept
    result: TrainResult
    tried: list[Candidate]
    samples_seen: int
    extra_forward: int


def _columns(t):
    """A [batch] output (torch-rechub's click probability) as [batch, 1], so column slices keep rows."""
    return t.unsqueeze(1) if t.ndim == 1 else t


def _concat(a, b):
    return replace(a, samples=a.samples + b.samples, labels=np.concatenate([a.labels, b.labels]),
                   texts=None, source=f"{a.source} + {b.source}")


def _split(ds, eval_ds, eval_size: int, seed: int, what: str):
    from edgeopt.train.split import eval_split

    if eval_ds is None and len(ds) < 4:
        raise UsageError(f"{ds.source}: {len(ds)} samples are too few to hold some out for {what}; give more")
    return eval_split(ds, eval_ds, eval_size=eval_size, seed=seed)


def _check_forgetting(x: float | None, metric: str) -> None:
    from edgeopt.update.metrics import higher_is_better

    if x is None:
        return
    if higher_is_better(metric) and not 0 <= x <= 1:
        raise UsageError(f"--max-forgetting {x} is out of range for {metric}: use 0 <= X <= 1 (0.02 = 2 points)")
    if not x >= 0:
        raise UsageError(f"--max-forgetting must be >= 0, got {x}")


def _check(*, data, out, old_data, eval_data, old_eval, method, strength, max_forgetting, eval_size, fisher_samples,
           temperature, output_kind, epochs, batch_size, lr, patience) -> None:
    from edgeopt.data import check_exists
    from edgeopt.train import TrainConfig
    from edgeopt.train.write import check_out
    from edgeopt.update import methods
    from edgeopt.update import metrics as mt

    if not data or not str(data).strip():
        raise UsageError("--data is required: the new labelled data to learn")
    methods.check(method, strength, old_data is not None)
    if max_forgetting is not None and old_data is None:
        raise UsageError("--max-forgetting needs --old-data: forgetting is measured on held-out old data")
    if eval_size < 2 or fisher_samples < 1:
        raise UsageError("--eval-size must be >= 2 and --fisher-samples >= 1")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")
    if output_kind is not None and output_kind not in mt.OUTPUT_KINDS:
        raise UsageError(f"--output-kind {output_kind!r}: choose {' or '.join(mt.OUTPUT_KINDS)}")
    TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr or 1e-3, patience=patience)  # checks the numbers
    check_out(out, "update")
    for spec, flag in ((data, "--data"), (old_data, "--old-data"), (eval_data, "--eval"), (old_eval, "--old-eval")):
        if spec is not None:
            check_exists(spec, flag)  # before the model loads


def _load(model, *, arch, arch_kwargs, trust_pickle, inputs, batch_size, rows=None) -> LoadedModel:
    from edgeopt.models import load_model

    # rows: the input check runs on the user's own rows (an .npz), not only on made-up ones
    loaded = load_model(model, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle, inputs=inputs,
                        rows=rows)
    if loaded.module is None:
        raise UsageError(f"{loaded.name} is {loaded.family}: updating needs the PyTorch model it came from")
    max_batch = loaded.metadata.get("max_batch")  # the .pt2's own constraint, kept when writing it back
    if max_batch is not None and batch_size > max_batch:
        raise UsageError(f"--batch-size {batch_size} is more than {loaded.name} allows (its batch axis goes up to "
                         f"{max_batch}); use --batch-size {max_batch} or less")
    return loaded


def _read_data(loaded: LoadedModel, *, data, old_data, eval_data, old_eval, task, metric, max_forgetting, eval_size,
               seed) -> _Data:
    from edgeopt.data import load_data
    from edgeopt.train import objectives
    from edgeopt.update import metrics as mt

    if metric is not None and task is None:
        task = {"accuracy": "binary", "auc": "binary", "logloss": "binary",
                "mse": "regress"}.get(metric.strip().lower(), task)

    def read(spec, what):
        ds = load_data(spec, io=loaded.io, tokenizer=loaded.tokenizer, max_length=loaded.max_length, seed=seed)
        if ds.labels is None:
            raise UsageError(f"{what} {spec} has no labels; update learns from labelled data (a 'labels' array "
                             "in .npz, a label column, or class folders)")
        return ds

    new = read(data, "--data")
    task = objectives.infer_task(task, loaded, True, new.labels)
    if task == "embed":
        raise UsageError("update trains on labels: --task classify, binary or regress")
    width = loaded.io.outputs[0].shape[-1] if loaded.io.outputs and len(loaded.io.outputs[0].shape) > 1 else 1
    metric = metric or mt.default(task, width)
    mt.parse(metric, task)
    _check_forgetting(max_forgetting, metric)
    new_train, new_eval = _split(new, read(eval_data, "--eval") if eval_data else None, eval_size, seed,
                                 "evaluation")
    old_train = old_test = None
    if old_data is not None:
        old_train, old_test = _split(read(old_data, "--old-data"), read(old_eval, "--old-eval") if old_eval else None,
                                     eval_size, seed, "measuring forgetting")

    def fit_val(ds):  # validation slices for early stopping and --tune, apart from the report's held-out slices
        if ds is None:
            return None, None
        fit, val = ds.split(0.1, seed=seed + 7) if len(ds) >= 20 else (ds, None)
        return fit, val.subsample(eval_size, seed=seed) if val is not None and len(val) > eval_size else val

    new_fit, new_val = fit_val(new_train)
    old_fit, old_val = fit_val(old_train)
    return _Data(task=task, metric=metric, width=width, new_train=new_train, new_eval=new_eval, new_fit=new_fit,
                 new_val=new_val, old_train=old_train, old_test=old_test, old_fit=old_fit, old_val=old_val)


def _prepare(loaded: LoadedModel, d: _Data, *, data, output_kind, seed, log) -> _Models:
    """The trainable module with tables grown for unseen ids / classes, checked to run on the data,
    and frozen copies of the previous model."""
    import torch

    from edgeopt.models.trainable import set_mode, trainable
    from edgeopt.train.batches import collate, forward, tensors
    from edgeopt.update import grow as growing
    from edgeopt.update import metrics as mt

    def frozen_copy(m):
        c = copy.deepcopy(m)
        set_mode(c, False)
        for p in c.parameters():
            p.requires_grad_(False)
        return c

    task, width, new_train = d.task, d.width, d.new_train
    names = loaded.io.input_names
    int_inputs = [s.name for s in loaded.io.inputs if s.dtype.startswith(("int", "uint"))]
    everything = [x for x in (d.new_train, d.new_eval, d.old_train, d.old_test) if x is not None]
    id_max = {} if loaded.is_text else growing.id_ranges(everything, int_inputs)  # a tokenizer fixes text ids
    label_max = int(max(x.labels.max() for x in everything)) if task == "classify" else None
    if task == "classify" and min(int(x.labels.min()) for x in everything) < 0:
        raise UsageError("labels must be class ids >= 0")

    module = trainable(loaded)
    frozen = frozen_copy(module)
    example = [torch.zeros_like(t) if n in int_inputs else t
               for n, t in zip(names, tensors(collate(new_train, range(min(2, len(new_train)))), names))]
    tables = growing.find_tables(module, names, example, width)
    growing.check_fits(tables, label_max, width, task, loaded.name)
    grew = growing.grow(module, tables, id_max, label_max, seed=seed)
    if grew:
        log("grew " + ", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in grew.items()))
    try:
        with torch.inference_mode():
            forward(module, collate(new_train, range(min(4, len(new_train)))), names)
    except Exception as e:  # noqa: BLE001 - the model rejecting the data is the user's data
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"{data} does not fit {loaded.name}: running it failed ({first}); give data with the "
                         f"model's inputs ({', '.join(names)})") from None
    with torch.inference_mode():  # two rows: batch norm in train mode refuses a batch of one
        new_width = int(forward(module, collate(new_train, range(min(2, len(new_train)))), names).shape[-1])
    teacher = frozen_copy(module)  # grown, untrained: the previous model plus neutral new rows
    if task != "binary":
        output_kind = None
    elif output_kind is None:
        sample = new_train.subsample(min(256, len(new_train)), seed=seed)
        output_kind = mt.detect_output_kind(column_outputs(teacher, sample, names))
        log(f"binary outputs read as {output_kind} (pass --output-kind to say otherwise)")
    return _Models(module=module, frozen=frozen, teacher=teacher, grew=grew, new_width=new_width,
                   old_width=width if isinstance(width, int) else new_width, output_kind=output_kind)


def _scores(module, d: _Data, ds, names, kind: str, columns=None) -> dict | None:
    from edgeopt.update import metrics as mt

    if ds is None:
        return None
    return mt.all_values(d.metric, d.task, column_outputs(module, ds, names)[..., :columns], ds.labels, kind)


def checkpoint_dir(out: Path) -> Path:
    """Where training checkpoints each epoch (as distill and prune do): OUT.checkpoint/, one folder
    per candidate strength."""
    return out.parent / f"{out.name}.checkpoint"


def _train(m: _Models, d: _Data, names, *, method, strength, tune, replay_limit, fisher_samples, temperature, epochs,
           batch_size, lr, patience, max_forgetting, seed, ckroot, resume, progress, log) -> _Training:
    """Train each candidate strength from the same start; keep the best (within --max-forgetting on
    the validation slice, then the best mean validation score). Each candidate checkpoints in
    ``ckroot``/candidate-N; ``resume`` continues those an interrupted run left (and runs the rest)."""
    import torch

    from edgeopt.train import TrainConfig, cached_outputs, fit
    from edgeopt.train.batches import collate, forward, tensors
    from edgeopt.train.checkpoint import fingerprint
    from edgeopt.update import methods
    from edgeopt.update import metrics as mt

    task, metric, module, teacher = d.task, d.metric, m.module, m.teacher
    kind, old_width = m.output_kind or "logits", m.old_width
    new_fit, new_val, old_fit, old_val = d.new_fit, d.new_val, d.old_fit, d.old_val
    base_val_old = (mt.value(metric, task, column_outputs(teacher, old_val, names)[..., :old_width], old_val.labels,
                             kind) if old_val else None)
    init_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    fisher_diag, anchor, extra_forward = None, None, 0
    if method == "ewc":
        log(f"Fisher information on {min(fisher_samples, len(old_fit))} old samples")
        sample = old_fit.subsample(min(fisher_samples, len(old_fit)), seed=seed + 3)
        fmod = copy.deepcopy(teacher)
        for p in fmod.parameters():
            p.requires_grad_(p.is_floating_point())
        one = ((tensors(collate(sample, [i]), names), torch.from_numpy(sample.labels[i:i + 1]))
               for i in range(len(sample)))
        fisher_diag = methods.fisher(fmod, one, lambda mod, item: methods.hard_loss(
            task, forward(mod, dict(zip(names, [a.numpy() for a in item[0]])), names), item[1], kind))
        anchor = {n: p.detach().clone() for n, p in m.frozen.named_parameters()}
        extra_forward += len(sample)
        del fmod

    sign = 1.0 if mt.higher_is_better(metric) else -1.0

    def evaluate(mod):
        row = {}
        if new_val is not None:
            row["new_val"] = mt.value(metric, task, column_outputs(mod, new_val, names), new_val.labels, kind)
        if old_val is not None:
            row["old_val"] = mt.value(metric, task, column_outputs(mod, old_val, names), old_val.labels, kind)
        if row:  # early stopping follows the new data (what is being learnt); the gate watches the old
            row["score"] = sign * row.get("new_val", row.get("old_val"))
        return row

    candidates = methods.TUNE_GRID[method] if tune else [strength if strength is not None else
                                                         methods.DEFAULT_STRENGTH[method]]
    tried, best, samples_seen = [], None, 0
    if resume and not any(ckroot.glob("candidate-*/last.pt")):
        raise UsageError(f"--resume: no checkpoint in {ckroot}; run without --resume to start training")
    if not resume and ckroot.exists():
        import shutil

        shutil.rmtree(ckroot)  # an earlier interrupted run's: this one starts afresh
    for i, cand in enumerate(candidates):
        ck = ckroot / f"candidate-{i}"
        module.load_state_dict(init_state)
        train = new_fit
        if method == "replay":
            train = _concat(new_fit, methods.replay_sample(old_fit, cand, len(new_fit), replay_limit, seed))
        labels_t = torch.from_numpy(np.asarray(train.labels))
        t_out = None
        if method == "lwf":
            def run_teacher(idx, _train=train):
                with torch.inference_mode():
                    return _columns(forward(teacher, collate(_train, idx), names))[..., :old_width].float().numpy()
            t_out = cached_outputs(run_teacher, len(train), batch=256)
            extra_forward += len(train)

        def loss_fn(mod, idx, gen, _train=train, _t=t_out, _labels=labels_t, _c=cand):
            o = _columns(forward(mod, collate(_train, idx), names))
            loss = methods.hard_loss(task, o, _labels[idx], kind)
            if method == "lwf":
                loss = loss + _c * methods.lwf_loss(task, o, torch.from_numpy(_t[idx]), temperature, kind)
            elif method == "ewc":
                loss = loss + 0.5 * _c * methods.ewc_penalty(module, fisher_diag, anchor)
            return loss

        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, patience=patience,
                          seed=seed, progress=progress, checkpoint_dir=ck, resume=resume and (ck / "last.pt").is_file())
        label = "" if cand is None else f" (strength {cand})"
        log(f"training: {method}{label} on {len(train)} samples, up to {epochs} epoch(s)")
        res = fit(module, n_samples=len(train), loss_fn=loss_fn, cfg=cfg, evaluate=evaluate,
                  fingerprint=fingerprint(method=method, strength=cand, samples=len(train), epochs=epochs, lr=lr,
                                          batch_size=batch_size, seed=seed), log=log)
        samples_seen += res.epochs_run * len(train)
        extra_forward += res.epochs_run * ((len(new_val) if new_val else 0) + (len(old_val) if old_val else 0))
        last = res.history[res.best_epoch - 1] if res.history else {}
        val_forgetting = (mt.drop(metric, base_val_old, last["old_val"])
                          if base_val_old is not None and "old_val" in last else None)
        ok = max_forgetting is None or val_forgetting is None or val_forgetting <= max_forgetting
        tried.append(Candidate(strength=cand, train_samples=len(train), epochs_run=res.epochs_run,
                               best_epoch=res.best_epoch, new_val=last.get("new_val"), old_val=last.get("old_val"),
                               val_forgetting=val_forgetting, within_max_forgetting=ok,
                               seconds=round(res.seconds, 1)))
        vals = [v for v in (last.get("new_val"), last.get("old_val")) if v is not None]
        key = (ok, sign * float(np.mean(vals)) if vals else -np.inf)  # --tune: learn the new, keep the old
        if best is None or key > best[0]:
            best = (key, cand, {k: v.detach().clone() for k, v in module.state_dict().items()}, res)
    _, chosen, state, result = best
    module.load_state_dict(state)
    return _Training(chosen=chosen, result=result, tried=tried, samples_seen=samples_seen,
                     extra_forward=extra_forward)


def _write(out: Path, loaded: LoadedModel, m: _Models, d: _Data, report: UpdateReport) -> None:
    from edgeopt.atomic import output_dir
    from edgeopt.train.batches import collate
    from edgeopt.train.report import REPORT, write_report
    from edgeopt.update.save import UpdateRecord, save

    with output_dir(out, marker=REPORT) as stage:
        save(loaded, m.module, stage, task=d.task, example=collate(d.new_fit, range(min(2, len(d.new_fit)))),
             width=m.new_width, grew=m.grew,
             record=UpdateRecord(method=report.method, metric=report.metric, forgetting=report.forgetting))
        write_report(stage, report)


def update(*, model: str | Path, data: str | Path, out: str | Path, old_data: str | Path | None = None,
           method: str = "lwf", task: str | None = None, metric: str | None = None, epochs: int = 3,
           batch_size: int = 32, lr: float | None = None, strength: float | None = None,
           replay_limit: int | None = None, max_forgetting: float | None = None, tune: bool = False,
           eval_data: str | Path | None = None, old_eval: str | Path | None = None, eval_size: int = 2000,
           fisher_samples: int = 512, temperature: float = 2.0, patience: int = 2, seed: int = 0,
           arch: str | None = None, arch_kwargs: dict | None = None, trust_pickle: bool = False, inputs=None,
           compact_delta: bool = False, output_kind: str | None = None, resume: bool = False, progress: bool = True,
           log: Callable[[str], None] = lambda m: None) -> UpdateResult:
    """Update ``model`` on ``data`` with ``method``; see the module docstring. ``compact_delta``:
    changed weights keep the previous version's low 16 bits (update/compact.py), measured after.
    ``output_kind``: 'logits' or 'probs' for a binary model (None: detected from its outputs on the
    new data), which picks the loss and the accuracy threshold. ``resume``: training continues from
    the checkpoints an interrupted run left in OUT.checkpoint/."""
    from edgeopt.models.trainable import set_mode
    from edgeopt.update import metrics as mt

    t0 = time.perf_counter()
    out = Path(out)
    _check(data=data, out=out, old_data=old_data, eval_data=eval_data, old_eval=old_eval, method=method,
           strength=strength, max_forgetting=max_forgetting, eval_size=eval_size, fisher_samples=fisher_samples,
           temperature=temperature, output_kind=output_kind, epochs=epochs, batch_size=batch_size, lr=lr,
           patience=patience)
    loaded = _load(model, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle, inputs=inputs,
                   batch_size=batch_size, rows=data)
    d = _read_data(loaded, data=data, old_data=old_data, eval_data=eval_data, old_eval=old_eval, task=task,
                   metric=metric, max_forgetting=max_forgetting, eval_size=eval_size, seed=seed)
    m = _prepare(loaded, d, data=data, output_kind=output_kind, seed=seed, log=log)
    names, kind = loaded.io.input_names, m.output_kind or "logits"

    # before: the previous model's own output columns (it cannot name new classes / items); its grown
    # rows only let it read ids it never saw, which the previous model could not run at all
    log("measuring before the update")
    before = Scores(old=_scores(m.teacher, d, d.old_test, names, kind, m.old_width),
                    new=_scores(m.teacher, d, d.new_eval, names, kind, m.old_width))
    transformer = loaded.family in ("hf", "sentence-transformers")
    lr = lr or (5e-5 if transformer else 1e-3)
    t = _train(m, d, names, method=method, strength=strength, tune=tune, replay_limit=replay_limit,
               fisher_samples=fisher_samples, temperature=temperature, epochs=epochs, batch_size=batch_size, lr=lr,
               patience=patience, max_forgetting=max_forgetting, seed=seed, ckroot=checkpoint_dir(out), resume=resume,
               progress=progress, log=log)
    import shutil

    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)  # trained: nothing left to resume
    set_mode(m.module, False)
    compact = None
    if compact_delta:
        from edgeopt.update.compact import keep_low_bits

        compact = keep_low_bits(m.module, m.teacher)
        log(f"--compact-delta: {compact['weights_moved']} weights moved by at most "
            f"{compact['max_relative_change']:.2%} to keep the previous version's low 16 bits")

    log("measuring after the update")
    metric = d.metric
    after = Scores(old=_scores(m.module, d, d.old_test, names, kind), new=_scores(m.module, d, d.new_eval, names, kind))
    forgetting = mt.drop(metric, before.old[metric], after.old[metric]) if d.old_test is not None else None
    report = UpdateReport(
        method=method, task=d.task, metric=metric, strength=t.chosen, output_kind=m.output_kind,
        model=UpdatedModel(source=str(model), family=loaded.family, grew=m.grew),
        data=UpdateData(new=str(data), new_train_samples=len(d.new_fit), new_eval_samples=len(d.new_eval),
                        old=str(old_data) if old_data else None,
                        old_train_samples=len(d.old_fit) if d.old_fit is not None else 0,
                        old_eval_samples=len(d.old_test) if d.old_test is not None else 0,
                        eval=str(eval_data) if eval_data else "10 % held out from --data",
                        old_eval=(str(old_eval) if old_eval else "10 % held out from --old-data") if old_data
                        else None),
        before=before, after=after, forgetting=forgetting,
        new_gain=mt.drop(metric, after.new[metric], before.new[metric]), max_forgetting=max_forgetting,
        passed=max_forgetting is None or forgetting is None or forgetting <= max_forgetting,
        compute=Compute(seconds=round(time.perf_counter() - t0, 1), train_samples_seen=t.samples_seen,
                        extra_forward_samples=t.extra_forward, candidates=len(t.tried)),
        settings=UpdateSettings(epochs=epochs, batch_size=batch_size, lr=lr, temperature=temperature, tune=tune,
                                seed=seed, replay_limit=replay_limit,
                                fisher_samples=fisher_samples if method == "ewc" else None),
        training=t.result, tried=t.tried, compact_delta=compact)
    if not report.passed:
        raise GateError(f"the update forgot too much: old-data {metric} {before.old[metric]:.4f} -> "
                        f"{after.old[metric]:.4f} (forgetting {forgetting:.4f} > --max-forgetting "
                        f"{max_forgetting}); nothing written. Try --method lwf/ewc/replay, a larger --strength "
                        "or --tune")
    _write(out, loaded, m, d, report)
    return UpdateResult(out=out, method=method, task=d.task, metric=metric, forgetting=forgetting, report=report)

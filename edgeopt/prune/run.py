"""``prune``: MODEL -> a pruned model in OUT (its family's checkpoint), recovered by distillation
when asked, with its speed measured on the exported runtime, and OUT/report.json.

Named stages over the training core (edgeopt.train): ``_validate`` and ``_load`` read and check
everything before any work (flags, model, data); ``Pruner`` (pruner.py) makes a pruned copy at a ratio and
``_prune`` picks the ratio (given, or searched for --target-speedup); ``_speed`` times both models
right after pruning (latency does not depend on the weights), so a prune that buys no speed fails
before ``_quality`` spends time on recovery; ``_write`` writes OUT atomically.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeopt.errors import GateError, UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.prune.pruner import PRUNABLE, TRANSFORMERS, Pruner, default_round_to, widths
from edgeopt.prune.report import (Counts, Gate, Macs, PruneBytes, PruneData, PrunedModel, PruneQuality, PruneReport,
                                  Recovery, RuntimeLatency)
from edgeopt.train.report import REPORT
@dataclass
class PruneResult:
    out: Path
    passed: bool
    report: PruneReport


def _validate(ratio, target_speedup, structured, round_to, recover_epochs, data, head_ratio, mac_weight=0.0):
    if (ratio is None) == (target_speedup is None):
        raise UsageError("give exactly one of --ratio or --target-speedup")
    if ratio is not None and not 0 < ratio < 1:
        raise UsageError(f"--ratio must be between 0 and 1 (the share of channels / weights removed), got {ratio}")
    if head_ratio is not None and not 0 <= head_ratio < 1:
        raise UsageError(f"--head-ratio must be in [0, 1), got {head_ratio}")
    if target_speedup is not None:
        if not 0 < target_speedup < 1:
            raise UsageError(f"--target-speedup must be between 0 and 1 (a share of the unpruned latency), "
                             f"got {target_speedup}")
        if not structured:
            raise UsageError("--target-speedup needs --structured: unstructured sparsity does not change the "
                             "latency of dense runtimes")
    if not 0 <= mac_weight <= 1:
        raise UsageError(f"--mac-weight must be in [0, 1] (0: importance alone, 1: importance per MAC), "
                         f"got {mac_weight}")
    if round_to is not None and round_to < 1:
        raise UsageError(f"--round-to must be >= 1, got {round_to}")
    if recover_epochs and not data:
        raise UsageError("--recover-epochs needs --data: recovery distils the unpruned model on it (labels optional)")
    if recover_epochs < 0:
        raise UsageError(f"--recover-epochs must be >= 0, got {recover_epochs}")


@dataclass
class _Data:
    task: str | None
    train: object | None  # edgeopt.data Dataset (None without --data)
    eval: object | None


@dataclass
class _Pruned:
    model: LoadedModel
    info: dict  # what the pruner did (sparsity, the block width used, per-layer widths)
    ratio: float
    rounding: int | None
    round_reason: str
    base_latency: dict | None  # timed during the --target-speedup search
    search: list[dict] | None


def _load(model, *, arch, arch_kwargs, trust_pickle, inputs, structured, mac_weight, rows=None) -> LoadedModel:
    from edgeopt.models import load_model

    # rows: the input check runs on the user's own rows (an .npz), not only on made-up ones
    m = load_model(model, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle, inputs=inputs, rows=rows)
    if m.family not in PRUNABLE or m.module is None:
        raise UsageError(f"{m.name} is {m.family}: prune needs the model's PyTorch code (a state dict with --arch, a "
                         "Hugging Face / sentence-transformers folder, or a pickled module with --trust-pickle)")
    if mac_weight and (not structured or m.family in TRANSFORMERS):
        raise UsageError("--mac-weight ranks the channels of a structured CNN / MLP prune; drop it"
                         + ("" if structured else " or add --structured"))
    return m


def _read_data(m: LoadedModel, *, data, eval_data, task, limit, eval_size, seed) -> _Data:
    """--data (importance and recovery) and the held-out data, checked to fit the model."""
    from edgeopt.data import load_data
    from edgeopt.prune import recover as rec
    from edgeopt.train import objectives
    from edgeopt.train.split import eval_split

    if not data:
        return _Data(task=task or m.metadata.get("task"), train=None, eval=None)
    ds = load_data(data, io=m.io, tokenizer=m.tokenizer, max_length=m.max_length, limit=limit, seed=seed)
    task = objectives.infer_task(task, m, ds.labels is not None, ds.labels)
    evald = None
    if eval_data:
        evald = load_data(eval_data, io=m.io, tokenizer=m.tokenizer, max_length=m.max_length, limit=eval_size,
                          seed=seed)
    ds, evald = eval_split(ds, evald, eval_size=eval_size, seed=seed)
    for d in (ds, evald):
        if task == "embed":
            d.labels = None
        rec.check_fits(m, d, task)
    return _Data(task=task, train=ds, eval=evald)


def _prune(make: Pruner, measure, *, ratio, target_speedup, round_reason, log) -> _Pruned:
    """The pruned model at ``ratio``, or at the least ratio that reaches ``target_speedup``."""
    from edgeopt.prune import speed

    m = make.model
    base_latency = search = None
    if target_speedup is not None:
        log("timing the unpruned model")
        base_latency = measure(m, "unpruned")
        ratio, pruned, search = speed.search_ratio(lambda r: make(r)[0], measure, base_latency, target_speedup,
                                                   log=log)
        log(f"least pruning that reaches {target_speedup}x: ratio {ratio:.3f}")
        pruned, info = make(ratio)  # info for the chosen ratio (cheap next to the timings)
    else:
        unit = ('FFN neurons / heads' if m.family in TRANSFORMERS else 'channels') if make.structured else 'weights'
        log(f"pruning {ratio:.0%} of {m.name}'s {unit}")
        pruned, info = make(ratio)
    rounding = make.rounding
    if info.get("round_to") not in (None, rounding):  # the default block was halved for this ratio
        round_reason = (f"{info['round_to']}: the default ({round_reason}) halved so that the narrowest layer "
                        f"keeps a block at ratio {ratio}")
        rounding = info["round_to"]
    return _Pruned(model=pruned, info=info, ratio=ratio, rounding=rounding, round_reason=round_reason,
                   base_latency=base_latency, search=search)


def _describe(m: LoadedModel, p: _Pruned, d: _Data, *, model, target_speedup, structured, data, eval_data, runtime,
              target, mac_weight) -> PruneReport:
    """What was pruned: widths, parameters and MACs before and after, how channels were ranked."""
    from edgeopt.prune.recover import example_args
    from edgeopt.prune.structured import count_macs

    ds, evald = d.train, d.eval
    args = example_args(m, None)[:] if ds is None else example_args(m, ds, 1)
    macs_b, params_b = count_macs(m.module, args)
    macs_a, params_a = count_macs(p.model.module, args)
    before, after = widths(m), widths(p.model)
    sparsity = note = None
    if structured and m.family in TRANSFORMERS:
        importance = "FFN activations / head contributions on --data" if ds is not None else "weight norms"
    elif structured:
        importance = (("first-order Taylor (|w x grad|) on --data" if ds is not None else "L2 weight magnitude")
                      + (f" / MACs^{mac_weight:g}" if mac_weight else ""))
    else:
        importance = "global weight magnitude (L1)"
        sparsity = p.info
        note = ("unstructured sparsity: the tensors keep their shapes, so dense runtimes run as much "
                "arithmetic as before; it buys a smaller compressed file, no speed")
    return PruneReport(
        model=PrunedModel(source=str(model), family=m.family, task=d.task),
        method="structured" if structured else "unstructured", ratio=p.ratio, target_speedup=target_speedup,
        round_to=p.rounding, round_to_reason=p.round_reason, importance=importance,
        widths={k: {"before": v, "after": after.get(k)} for k, v in before.items()},
        parameters=Counts(unpruned=params_b, pruned=params_a),
        macs=Macs(unpruned=macs_b, pruned=macs_a, input=[list(a.shape) for a in args]),
        runtime=runtime, target=target,
        data=PruneData(train=str(data) if data else None,
                       eval=str(eval_data) if eval_data else (f"held out from {data} (10 %)" if data else None),
                       train_samples=len(ds) if ds is not None else 0,
                       eval_samples=len(evald) if evald is not None else 0),
        sparsity=sparsity, note=note)


def _speed(m: LoadedModel, p: _Pruned, measure, *, runtime, structured, target_speedup,
           log) -> tuple[dict[str, RuntimeLatency], Gate]:
    """Both models timed on the runtime, and the speed gate's verdict."""
    from edgeopt.prune import speed

    base_latency = p.base_latency
    if base_latency is None:
        log("timing the unpruned model")
        base_latency = measure(m, "unpruned")
    log("timing the pruned model")
    pruned_latency = measure(p.model, "pruned")
    verdict = speed.verdict(base_latency, pruned_latency, target_speedup=target_speedup)
    reason = verdict["reason"]
    if not structured:
        reason = ("not applied: unstructured sparsity buys a smaller compressed file, no speed on dense runtimes ("
                  + reason + ")")
    gate = Gate(applies=structured, passed=verdict["passed"], ratio=verdict["ratio"], limit=verdict["limit"],
                reason=reason)
    latency = RuntimeLatency(unpruned=base_latency, pruned=pruned_latency, ratio=verdict["ratio"], search=p.search)
    return {runtime: latency}, gate


def checkpoint_dir(out: Path) -> Path:
    """Where recovery checkpoints each epoch (as distill does): OUT.checkpoint/ beside OUT."""
    return out.parent / f"{out.name}.checkpoint"


def _quality(m: LoadedModel, p: _Pruned, d: _Data, out: Path, *, recover_epochs, batch_size, lr, seed, resume,
             progress, log) -> tuple[PruneQuality | None, Recovery | None]:
    """The pruned model against the unpruned one on the held-out data, before and after recovery."""
    from edgeopt.prune import recover as rec

    evald, task = d.eval, d.task
    if evald is None:
        return None, None
    ref = rec.outputs(m, evald)
    quality = PruneQuality(samples=len(evald), metric_vs="the unpruned model",
                           before=rec.before(task, ref, evald.labels),
                           after_pruning=rec.quality(task, ref, rec.outputs(p.model, evald), evald.labels))
    if not recover_epochs:
        return quality, None
    ck = checkpoint_dir(out)
    if not resume and ck.exists():
        import shutil

        shutil.rmtree(ck)  # an earlier interrupted run's: this one starts afresh
    # the pruned widths are in the fingerprint: a checkpoint resumes only into the same pruned network
    recovery = rec.recover(p.model, m, d.train, evald, task=task, epochs=recover_epochs, batch_size=batch_size,
                           lr=lr, seed=seed, checkpoint_dir=ck, resume=resume, progress=progress, log=log,
                           fingerprint={"widths": widths(p.model), "ratio": p.ratio, "samples": len(d.train)})
    after = rec.quality(task, ref, rec.outputs(p.model, evald), evald.labels)
    return dataclasses.replace(quality, after_recovery=after), recovery


def _write(out: Path, m: LoadedModel, p: _Pruned, d: _Data, report: PruneReport, *, structured,
           data) -> PruneReport:
    """The pruned model into OUT (atomically), checked to reload as written, with its report."""
    from edgeopt.atomic import output_dir
    from edgeopt.prune import recover as rec
    from edgeopt.train.report import write_report
    from edgeopt.train.write import class_names, disk_bytes, save_model

    with output_dir(out, marker=REPORT) as stage:
        args = rec.example_args(m, d.train, 2)
        if structured and m.family in TRANSFORMERS:  # per-layer widths: recorded in config.json
            from edgeopt.models.hf_layers import WIDTHS_KEY, pretrained, widths_of

            hf_model = pretrained(p.model.module)
            setattr(hf_model.config, WIDTHS_KEY, widths_of(hf_model))
        example = {n: a.numpy() for n, a in zip(m.io.input_names, args)}
        save_model(p.model, stage, task=d.task, example=example,
                   class_names=m.metadata.get("class_names") or class_names(data))
        _check_reloads(stage, p.model)
        size = PruneBytes(unpruned=disk_bytes(m.source), pruned=disk_bytes(stage))
        if not structured:
            from edgeopt.prune.unstructured import compressed_bytes

            size = dataclasses.replace(size, unpruned_gzip=compressed_bytes(m.module),
                                       pruned_gzip=compressed_bytes(p.model.module))
        report = dataclasses.replace(report, bytes=size, passed=True)
        write_report(stage, report)
    return report


def prune(*, model: str | Path, out: str | Path, ratio: float | None = None, target_speedup: float | None = None,
          structured: bool = False, round_to: int | None = None, head_ratio: float | None = None,
          mac_weight: float = 0.0,
          data: str | Path | None = None, eval_data: str | Path | None = None, task: str | None = None,
          recover_epochs: int = 0, batch_size: int = 32, lr: float | None = None, runtime: str = "onnxruntime",
          target: str = "cpu", speed_check: bool = True, limit: int | None = None, eval_size: int = 1000,
          importance_samples: int = 256, seq_len: int = 32, seed: int = 0, arch: str | None = None,
          arch_kwargs: dict | None = None, trust_pickle: bool = False, inputs=None, resume: bool = False,
          progress: bool = True, log: Callable[[str], None] = lambda m: None,
          latency_fn: Callable | None = None) -> PruneResult:
    """Prune ``model`` (``ratio`` of its channels / weights, or the least that reaches
    ``target_speedup`` x its exported latency) and write it to ``out``.

    ``latency_fn(model, label) -> {"p50_ms": ...}`` replaces the export + bench measurement (tests).
    ``resume``: recovery continues from the checkpoint an interrupted run left in OUT.checkpoint/
    (the pruning itself is deterministic for the same model, data and settings, and is redone).
    Raises UsageError on bad input (nothing written), GateError when the structured prune is not
    faster on the runtime (OUT/report.json is written, without the model) or the target is unmet.
    """
    from edgeopt.atomic import output_dir
    from edgeopt.data import check_exists
    from edgeopt.prune import speed
    from edgeopt.train.report import write_report
    from edgeopt.train.write import check_out

    out = Path(out)
    _validate(ratio, target_speedup, structured, round_to, recover_epochs, data, head_ratio, mac_weight)
    speed.check_runtime(runtime)
    if speed_check or target_speedup is not None:
        from edgeopt.bench.profiles import resolve_targets

        resolve_targets([target])  # an unknown --target is bad input before any work
    check_out(out, "prune")
    for spec, flag in ((data, "--data"), (eval_data, "--eval")):  # before the model loads
        if spec:
            check_exists(spec, flag)
    m = _load(model, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle, inputs=inputs,
              structured=structured, mac_weight=mac_weight, rows=data)
    rounding, round_reason = (round_to, f"{round_to}: given") if round_to else default_round_to()
    if not structured:
        rounding, round_reason = None, "unstructured: widths unchanged"
    d = _read_data(m, data=data, eval_data=eval_data, task=task, limit=limit, eval_size=eval_size, seed=seed)
    make = Pruner(model=m, train=d.train, task=d.task, structured=structured, rounding=rounding, auto_round=round_to is None,
                   head_ratio=head_ratio, importance_samples=importance_samples, mac_weight=mac_weight)

    work = tempfile.TemporaryDirectory(prefix="edgeopt-prune-")
    try:
        workdir = Path(work.name)

        def measure(model_: LoadedModel, label: str) -> dict:
            if latency_fn is not None:
                return latency_fn(model_, label)
            return speed.exported_latency(model_, workdir, runtime=runtime, target=target, seq_len=seq_len, log=log)

        p = _prune(make, measure, ratio=ratio, target_speedup=target_speedup, round_reason=round_reason, log=log)
        report = _describe(m, p, d, model=model, target_speedup=target_speedup, structured=structured, data=data,
                           eval_data=eval_data, runtime=runtime, target=target, mac_weight=mac_weight)
        if speed_check or target_speedup is not None:
            latency, gate = _speed(m, p, measure, runtime=runtime, structured=structured,
                                   target_speedup=target_speedup, log=log)
            report = dataclasses.replace(report, latency=latency, gate=gate)
            if structured and not gate.passed:
                with output_dir(out, marker=REPORT) as stage:
                    write_report(stage, report)
                raise GateError(f"speed gate failed: {gate.reason} ({runtime}, {target}); the pruned model was "
                                f"not written; report: {out / REPORT}. Prune more, raise --round-to, or pass "
                                "--no-speed-check")
        quality, recovery = _quality(m, p, d, out, recover_epochs=recover_epochs, batch_size=batch_size, lr=lr,
                                     seed=seed, resume=resume, progress=progress, log=log)
        report = dataclasses.replace(report, quality=quality, recovery=recovery)
        report = _write(out, m, p, d, report, structured=structured, data=data)
        import shutil

        shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
        return PruneResult(out=out, passed=True, report=report)
    finally:
        work.cleanup()


def _check_reloads(folder: Path, pruned: LoadedModel) -> None:
    """The written folder, loaded as `edgeopt export` will load it, computes what the pruned model
    computes (a transformer is rebuilt from config.json's recorded widths: a wrong narrowing would
    load without error and answer differently)."""
    import numpy as np

    from edgeopt.models import load_model

    feeds = pruned.sample_feeds()[0]
    want = list(pruned.reference(feeds).values())
    got = list(load_model(folder).reference(feeds).values())
    for w, g in zip(want, got):
        if w.shape != g.shape or not np.allclose(w, g, rtol=1e-3, atol=1e-4):
            err = float(np.abs(w - g).max()) if w.shape == g.shape else f"shape {g.shape} vs {w.shape}"
            raise RuntimeError(f"the pruned model written to {folder} does not reload to the same outputs ({err}); "
                               "please report this")

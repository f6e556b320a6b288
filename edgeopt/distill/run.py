"""``distill``: teacher + data -> a smaller student in the teacher's family, and OUT/report.json.

Reads and checks everything first (models, data, shapes, flags), then caches the teacher's
outputs once, trains with ``edgeopt.train.fit`` (checkpoints beside OUT in OUT.checkpoint/ for
``resume``), compares teacher and student on held-out data, and writes OUT atomically: an
interrupted run leaves a resumable checkpoint and never a half-written OUT.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError

REPORT = "report.json"


@dataclass
class DistillResult:
    out: Path | None  # None on torchrun ranks other than 0, which write nothing
    task: str
    report: dict = field(default_factory=dict)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).exists())):
        raise UsageError(f"-o {out} exists and is not an earlier distill output; choose another folder or empty it")


def _load(path, arch, kwargs, trust_pickle, inputs, role):
    from edgeopt.models import load_model

    try:
        return load_model(path, arch=arch, arch_kwargs=kwargs, trust_pickle=trust_pickle, inputs=inputs)
    except UsageError as e:
        msg = str(e).replace("--arch-kwargs", f"--{role}-arch-kwargs").replace("--arch ", f"--{role}-arch ")
        raise UsageError(f"{role} {path}: {msg}") from None


def _same_vocab(a, b) -> bool:
    return a is None or b is None or a is b or a.get_vocab() == b.get_vocab()


def _lengths(ds) -> np.ndarray | None:
    return np.array([s["input_ids"].shape[-1] for s in ds.samples]) if ds.kind == "text" else None


def _outputs(module, ds, names, batch: int = 64) -> np.ndarray:
    """The module's (pooled) outputs on every sample of ds, in sample order."""
    import torch

    from edgeopt.distill.batches import collate, forward

    lengths = _lengths(ds)
    order = np.arange(len(ds)) if lengths is None else np.argsort(lengths, kind="stable")
    out = None
    with torch.inference_mode():
        for start in range(0, len(ds), batch):
            idx = order[start:start + batch]
            y = forward(module, collate(ds, idx), names).float().numpy()
            out = np.empty((len(ds), *y.shape[1:]), dtype=y.dtype) if out is None else out
            out[idx] = y
    return out


def _split(ds, holdout: float, seed: int):
    """Dataset.split, keeping images lazy (decoded when a batch needs them, not all at once)."""
    from dataclasses import replace

    from edgeopt.data.images import LazyImages

    if not isinstance(ds.samples, LazyImages):
        return ds.split(holdout, seed=seed)
    order = np.random.default_rng(seed).permutation(len(ds))
    k = max(1, int(round(len(ds) * holdout)))
    if len(ds) - k < 1:
        raise UsageError(f"{ds.source}: {len(ds)} samples are too few to hold some out; pass --eval")

    def take(idx):
        paths = [list.__getitem__(ds.samples, int(i)) for i in idx]
        return replace(ds, samples=LazyImages(paths, *ds.samples.args),
                       labels=None if ds.labels is None else ds.labels[idx])

    return take(order[k:]), take(order[:k])


def _class_names(data: str) -> list[str] | None:
    p = Path(data)
    if p.is_dir():
        names = sorted(d.name for d in p.iterdir() if d.is_dir())
        return names or None
    return None


def distill(*, teacher: str | Path, data: str | Path, out: str | Path, student: str | Path | None = None,
            student_layers: int | None = None, latency_budget: float | None = None,
            eval_data: str | Path | None = None, task: str | None = None, epochs: int = 3, batch_size: int = 32,
            lr: float | None = None, alpha: float = 0.5, temperature: float = 2.0, embed_loss: str = "mse",
            augment: bool = True, seed: int = 0, resume: bool = False, patience: int = 2,
            limit: int | None = None, eval_size: int = 1000, latency: bool = True,
            teacher_arch: str | None = None, teacher_arch_kwargs: dict | None = None,
            student_arch: str | None = None, student_arch_kwargs: dict | None = None, trust_pickle: bool = False,
            inputs=None, cache_dir: str | Path | None = None, judgments: str | Path | None = None,
            min_relevance: float | None = None, progress: bool = True,
            log: Callable[[str], None] = lambda m: None) -> DistillResult:
    """Distil ``teacher`` into a student (``student``, ``student_layers`` or ``latency_budget``).
    ``judgments`` (embedders): also score teacher and student as a store search (distill/search.py)."""
    from edgeopt.data import load_data
    from edgeopt.distill import latency as lat
    from edgeopt.distill import objectives
    from edgeopt.distill.outputs import compare, disk_bytes, parameters, save_student
    from edgeopt.distill.students import check_layers, save_layer_dropped, teacher_depth
    from edgeopt.train import TrainConfig, cached_outputs, distributed, fit
    from edgeopt.train.checkpoint import fingerprint

    out = Path(out)
    given = [x is not None for x in (student, student_layers, latency_budget)]
    if sum(given) != 1:
        raise UsageError("give exactly one of --student, --student-layers or --latency-budget")
    if data is None or str(data) == "":
        raise UsageError("--data is required: the texts, images or features to distil on")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")
    if latency_budget is not None and not 0 < latency_budget < 1:
        raise UsageError(f"--latency-budget must be between 0 and 1 (a share of the teacher's latency), "
                         f"got {latency_budget}")
    if embed_loss not in objectives.EMBED_LOSSES:
        raise UsageError(f"unknown embedding loss {embed_loss!r}; choose {', '.join(objectives.EMBED_LOSSES)}")
    if eval_size < 1 or (limit is not None and limit < 1):
        raise UsageError("--eval-size and --limit must be >= 1")
    TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr or 1e-4, patience=patience)  # checks the numbers
    from edgeopt.data import check_exists

    for spec, flag in ((data, "--data"), (eval_data, "--eval")):  # before the teacher loads
        if spec is not None:
            check_exists(spec, flag)
    rank, _ = distributed.setup()
    main = rank == 0
    if main:
        _check_out(out)

    teacher_m = _load(teacher, teacher_arch, teacher_arch_kwargs, trust_pickle, inputs, "teacher")
    if student_layers is not None:
        check_layers(teacher_m, student_layers)
    if latency_budget is not None:
        check_layers(teacher_m, 1)
    ds = load_data(data, io=teacher_m.io, tokenizer=teacher_m.tokenizer, max_length=teacher_m.max_length,
                   limit=limit, seed=seed)
    task = objectives.infer_task(task, teacher_m, ds.labels is not None)
    if task == "embed":
        ds.labels = None
    if eval_data is not None:
        evald = load_data(eval_data, io=teacher_m.io, tokenizer=teacher_m.tokenizer,
                          max_length=teacher_m.max_length, limit=eval_size, seed=seed)
    else:
        ds, evald = _split(ds, 0.1, seed)
        evald = evald.subsample(eval_size, seed=seed) if len(evald) > eval_size else evald
    if task == "embed":
        evald.labels = None
    judged = None
    if judgments is not None:
        from edgeopt.distill.search import read_judgments

        if task != "embed":
            raise UsageError(f"--judgments scores embedders as a search; this is a {task} task")
        judged = read_judgments(judgments, min_relevance)
    if len(ds) < 2:
        raise UsageError(f"{data}: {len(ds)} training sample{'s' if len(ds) != 1 else ''} after holding out "
                         "evaluation data; give more data or --eval")
    if task == "classify":
        width = teacher_m.io.outputs[0].shape[-1]
        for d in (ds, evald):
            if d.labels is not None and isinstance(width, int) and (d.labels.min() < 0 or d.labels.max() >= width):
                raise UsageError(f"{d.source}: labels reach {int(d.labels.max())}, but {teacher_m.name} has "
                                 f"{width} classes; the data does not fit the teacher")

    work = tempfile.TemporaryDirectory(prefix="edgeopt-distill-")
    try:
        workdir = Path(work.name)
        candidates, teacher_latency = None, None
        if latency_budget is not None:
            keep = None
            if main:
                keep, candidates, teacher_latency = lat.choose_depth(teacher_m, latency_budget, workdir, log=log)
            student_layers = distributed.broadcast(keep)
        kept = None
        if student_layers is not None:  # rank 0 writes it (transformers saves on the main process only)
            from edgeopt.models import load_model

            folder = None
            if main:
                folder = Path(tempfile.mkdtemp(prefix=f"student-{student_layers}-", dir=workdir))
                kept = save_layer_dropped(teacher_m, student_layers, folder)
            folder, kept = distributed.broadcast((folder, kept))
            student_m = load_model(folder)
        else:
            student_m = _load(student, student_arch, student_arch_kwargs, trust_pickle, inputs, "student")
        if student_m.io.input_names != teacher_m.io.input_names:
            raise UsageError(f"teacher takes {', '.join(teacher_m.io.input_names)} but the student takes "
                             f"{', '.join(student_m.io.input_names)}; they must read the same inputs")
        t_shape, s_shape = teacher_m.io.outputs[0].shape[1:], student_m.io.outputs[0].shape[1:]
        if task != "embed" or len(t_shape) == len(s_shape) == 1:
            if t_shape[-1:] != s_shape[-1:]:
                raise UsageError(f"teacher and student outputs differ: {teacher_m.name} gives "
                                 f"{tuple(t_shape)}, the student {tuple(s_shape)} (classes / embedding width "
                                 "must match)")
        s_train, s_eval = ds, evald
        if not _same_vocab(teacher_m.tokenizer, student_m.tokenizer):  # the student reads its own tokens
            s_all = load_data(data, io=student_m.io, tokenizer=student_m.tokenizer, max_length=student_m.max_length,
                              limit=limit, seed=seed)
            s_train, s_eval = (_split(s_all, 0.1, seed) if eval_data is None else
                               (s_all, load_data(eval_data, io=student_m.io, tokenizer=student_m.tokenizer,
                                                 max_length=student_m.max_length, limit=eval_size, seed=seed)))
            s_eval = s_eval.subsample(eval_size, seed=seed) if len(s_eval) > eval_size else s_eval

        names_t, names_s = teacher_m.io.input_names, student_m.io.input_names
        run_fp = fingerprint(teacher=str(Path(teacher).resolve()), student=str(student) if student else None,
                             layers=kept, data=str(data), eval=str(eval_data), limit=limit, task=task, epochs=epochs,
                             batch_size=batch_size, lr=lr, alpha=alpha, temperature=temperature, loss=embed_loss,
                             augment=augment, seed=seed, samples=len(ds), world=distributed.world_size())
        ckdir = out.parent / f"{out.name}.checkpoint"
        if main and not resume and ckdir.exists():
            shutil.rmtree(ckdir)
        distributed.barrier()
        cache_key = hashlib.sha256(json.dumps({k: run_fp[k] for k in ("teacher", "data", "eval", "limit", "seed",
                                                                       "samples")}).encode()).hexdigest()[:16]
        cache_root = Path(cache_dir) if cache_dir else ckdir
        log(f"caching the teacher's outputs on {len(ds)} training samples")
        from edgeopt.distill.batches import collate, forward

        def teacher_run(d):
            import torch

            def run(idx):
                with torch.inference_mode():
                    return forward(teacher_m.module, collate(d, idx), names_t).float().numpy()
            return run

        t_train = cached_outputs(teacher_run(ds), len(ds), path=cache_root / f"teacher-train-{cache_key}.npy",
                                 lengths=_lengths(ds))
        t_eval = cached_outputs(teacher_run(evald), len(evald), path=cache_root / f"teacher-eval-{cache_key}.npy",
                                lengths=_lengths(evald))
        untrained = _outputs(student_m.module, s_eval, names_s) if kept is not None and main else None

        import torch

        from edgeopt.distill.batches import augment as augment_inputs
        from edgeopt.distill.batches import pooled, tensors
        from edgeopt.models.trainable import trainable

        transformer_student = student_m.family in ("hf", "sentence-transformers")
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr or (1e-4 if transformer_student else 1e-3),
                          patience=patience, seed=seed, checkpoint_dir=ckdir, resume=resume, progress=progress)
        labels = None if ds.labels is None or task == "embed" else torch.from_numpy(np.asarray(ds.labels))
        module = trainable(student_m)
        do_augment = augment and task != "embed"

        def loss_fn(model, idx, gen):
            args = tensors(collate(s_train, idx), names_s)
            if do_augment:
                args = augment_inputs(args, names_s, gen, tokenizer=student_m.tokenizer)
            s = pooled(model(*args), dict(zip(names_s, args)))
            t = torch.from_numpy(t_train[idx])
            return objectives.loss(task, s, t, None if labels is None else labels[idx], alpha=alpha,
                                   temperature=temperature, embed_loss=embed_loss)

        def evaluate(m):
            return objectives.score(task, _outputs(m, s_eval, names_s), t_eval, s_eval.labels)

        log(f"training the student ({task}, {len(ds)} samples, up to {epochs} epoch{'s' if epochs > 1 else ''})")
        trained = fit(module, n_samples=len(ds), loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, fingerprint=run_fp,
                      lengths=_lengths(s_train), log=log)
        if not main:
            return DistillResult(out=None, task=task)

        s_out = _outputs(student_m.module, s_eval, names_s)
        quality = compare(task, t_eval, s_out, s_eval.labels, untrained)
        if judged is not None:
            from edgeopt.data.text import from_texts
            from edgeopt.distill.search import search_quality

            def encoder(m):
                return lambda texts: _outputs(m.module, from_texts(texts, None, m.io, tokenizer=m.tokenizer,
                                                                   max_length=m.max_length, source="judgments"),
                                              m.io.input_names)

            log(f"scoring teacher and student as a search: {len(judged.queries)} queries")
            quality["search"] = search_quality(judged, list(evald.texts or []),
                                               {"teacher": encoder(teacher_m), "student": encoder(student_m)})
        from edgeopt.atomic import output_dir

        report = {"task": task, "teacher": {"source": str(teacher), "family": teacher_m.family,
                                            "parameters": parameters(teacher_m), "bytes": disk_bytes(teacher_m.source)},
                  "student": {"source": str(student) if student else f"{len(kept)} of the teacher's layers",
                              "parameters": parameters(student_m)},
                  "data": {"train": str(data), "train_samples": len(ds), "labels": ds.labels is not None,
                           "eval": str(eval_data) if eval_data else f"held out from {data} (10 %)",
                           "eval_samples": len(evald)},
                  "settings": {"epochs": epochs, "batch_size": batch_size, "lr": cfg.lr, "alpha": alpha,
                               "temperature": temperature, "loss": embed_loss if task == "embed" else "kd",
                               "augment": do_augment, "seed": seed},
                  "training": trained.to_json(), "quality": quality}
        if kept is not None:
            report["teacher"]["layers"] = teacher_depth(teacher_m)
            report["student"].update(layers=len(kept), kept_layers=kept)
        if candidates is not None:
            report["latency_budget"] = {"budget": latency_budget, "teacher": teacher_latency, "candidates": candidates,
                                        "chosen_layers": student_layers}
        with output_dir(out, marker=REPORT) as stage:
            save_student(student_m, stage, task=task, example=collate(s_train, range(min(2, len(s_train)))),
                         class_names=_class_names(str(data)))
            report["student"]["bytes"] = disk_bytes(stage)
            if latency:
                report["teacher"]["latency"] = teacher_latency or lat.exported_latency(teacher_m, workdir, log=log)
                report["student"]["latency"] = lat.exported_latency(student_m, workdir, log=log)
                if "p50_ms" in report["teacher"]["latency"] and "p50_ms" in report["student"]["latency"]:
                    report["student"]["latency"]["ratio"] = (report["student"]["latency"]["p50_ms"]
                                                             / report["teacher"]["latency"]["p50_ms"])
            (stage / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        shutil.rmtree(ckdir, ignore_errors=True)
        return DistillResult(out=out, task=task, report=report)
    finally:
        work.cleanup()

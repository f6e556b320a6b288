"""``distill``: teacher + data -> a smaller student in the teacher's family, and OUT/report.json.

Named stages over the training core (edgeopt.train): ``_check`` reads the flags, ``_load_teacher``
and ``_read_data`` read the teacher and the data and check they fit, ``_make_student`` loads or
builds the student (``--latency-budget`` times layer-dropped candidates first), ``_train`` caches
the teacher's outputs once and trains with ``edgeopt.train.fit`` (checkpoints beside OUT in
OUT.checkpoint/ for ``resume``), ``_measure`` compares teacher and student on held-out data, and
``_write`` writes OUT atomically: an interrupted run leaves a resumable checkpoint and never a
half-written OUT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.distill.report import (DistillData, DistillReport, DistillSettings, LatencyBudget, StudentSummary,
                                    TeacherSummary)
from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.train import TrainResult
from edgeopt.train.outputs import Comparison
from edgeopt.train.report import REPORT


@dataclass
class DistillResult:
    out: Path | None  # None on torchrun ranks other than 0, which write nothing
    task: str
    report: DistillReport | None = None  # None where out is None


@dataclass
class _Data:
    """The data in the teacher's tokens, the task, and the --judgments to score a search on."""
    task: str
    train: object  # edgeopt.data Dataset
    eval: object
    judged: object | None  # distill.search.Judgments


@dataclass
class _Student:
    model: LoadedModel
    train: object  # the training / evaluation data in the student's tokens (the teacher's when they share them)
    eval: object
    kept: list[int] | None = None  # layer-dropped: the teacher's layers it kept
    budget: LatencyBudget | None = None  # --latency-budget: the candidates timed


@dataclass
class _Trained:
    result: TrainResult
    lr: float
    augment: bool
    teacher_eval: np.ndarray  # the teacher's outputs on the evaluation data
    untrained: np.ndarray | None  # a layer-dropped student's outputs before training


def _check(*, student, student_layers, latency_budget, data, eval_data, alpha, temperature, embed_loss, eval_size,
           limit, epochs, batch_size, lr, patience) -> None:
    from edgeopt.data import check_exists
    from edgeopt.train import TrainConfig, objectives

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
    for spec, flag in ((data, "--data"), (eval_data, "--eval")):  # before the teacher loads
        if spec is not None:
            check_exists(spec, flag)


def _load(path, arch, kwargs, trust_pickle, inputs, role, rows=None) -> LoadedModel:
    from edgeopt.models import load_model

    try:  # rows: the input check runs on the user's own rows (an .npz), not only on made-up ones
        return load_model(path, arch=arch, arch_kwargs=kwargs, trust_pickle=trust_pickle, inputs=inputs, rows=rows)
    except UsageError as e:
        msg = str(e).replace("--arch-kwargs", f"--{role}-arch-kwargs").replace("--arch ", f"--{role}-arch ")
        raise UsageError(f"{role} {path}: {msg}") from None


def _read(model: LoadedModel, data, eval_data, *, limit, eval_size, seed):
    """(training, evaluation) data in ``model``'s tokens: --eval, else 10 % of --data held out."""
    from edgeopt.data import load_data

    def read(spec, n):
        return load_data(spec, io=model.io, tokenizer=model.tokenizer, max_length=model.max_length, limit=n, seed=seed)

    return read(data, limit), read(eval_data, eval_size) if eval_data is not None else None


def _read_data(teacher: LoadedModel, *, data, eval_data, task, limit, eval_size, seed, judgments,
               min_relevance) -> _Data:
    from edgeopt.train import objectives
    from edgeopt.train.split import eval_split

    ds, evald = _read(teacher, data, eval_data, limit=limit, eval_size=eval_size, seed=seed)
    task = objectives.infer_task(task, teacher, ds.labels is not None, ds.labels)
    if task == "embed":
        ds.labels = None
    ds, evald = eval_split(ds, evald, eval_size=eval_size, seed=seed)
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
        width = teacher.io.outputs[0].shape[-1]
        for d in (ds, evald):
            if d.labels is not None and isinstance(width, int) and (d.labels.min() < 0 or d.labels.max() >= width):
                raise UsageError(f"{d.source}: labels reach {int(d.labels.max())}, but {teacher.name} has "
                                 f"{width} classes; the data does not fit the teacher")
    return _Data(task=task, train=ds, eval=evald, judged=judged)


def _same_vocab(a, b) -> bool:
    return a is None or b is None or a is b or a.get_vocab() == b.get_vocab()


def _make_student(teacher: LoadedModel, d: _Data, workdir: Path, *, student, student_layers, latency_budget,
                  student_arch, student_arch_kwargs, trust_pickle, inputs, data, eval_data, limit, eval_size, seed,
                  log) -> _Student:
    """The student (--student, --student-layers, or the deepest layer-dropped one within
    --latency-budget), checked against the teacher, with the data in its own tokens."""
    from edgeopt.distill import latency as lat
    from edgeopt.distill.students import save_layer_dropped
    from edgeopt.train import distributed

    main = distributed.is_main()
    budget = None
    if latency_budget is not None:
        keep = candidates = teacher_latency = None
        if main:
            keep, candidates, teacher_latency = lat.choose_depth(teacher, latency_budget, workdir, log=log)
        student_layers = distributed.broadcast(keep)
        if main:
            budget = LatencyBudget(budget=latency_budget, teacher=teacher_latency, candidates=candidates,
                                   chosen_layers=student_layers)
    kept = None
    if student_layers is not None:  # rank 0 writes it (transformers saves on the main process only)
        from edgeopt.models import load_model

        folder = None
        if main:
            folder = Path(tempfile.mkdtemp(prefix=f"student-{student_layers}-", dir=workdir))
            kept = save_layer_dropped(teacher, student_layers, folder)
        folder, kept = distributed.broadcast((folder, kept))
        model = load_model(folder)
    else:
        model = _load(student, student_arch, student_arch_kwargs, trust_pickle, inputs, "student", data)
    if model.io.input_names != teacher.io.input_names:
        raise UsageError(f"teacher takes {', '.join(teacher.io.input_names)} but the student takes "
                         f"{', '.join(model.io.input_names)}; they must read the same inputs")
    t_shape, s_shape = teacher.io.outputs[0].shape[1:], model.io.outputs[0].shape[1:]
    if d.task != "embed" or len(t_shape) == len(s_shape) == 1:
        if t_shape[-1:] != s_shape[-1:]:
            raise UsageError(f"teacher and student outputs differ: {teacher.name} gives "
                             f"{tuple(t_shape)}, the student {tuple(s_shape)} (classes / embedding width "
                             "must match)")
    s_train, s_eval = d.train, d.eval
    if not _same_vocab(teacher.tokenizer, model.tokenizer):  # the student reads its own tokens
        from edgeopt.train.split import eval_split

        s_all, s_given = _read(model, data, eval_data, limit=limit, eval_size=eval_size, seed=seed)
        s_train, s_eval = eval_split(s_all, s_given, eval_size=eval_size, seed=seed)
    return _Student(model=model, train=s_train, eval=s_eval, kept=kept, budget=budget)


def _train(teacher: LoadedModel, student: _Student, d: _Data, out: Path, *, teacher_path, student_path, data,
           eval_data, limit, epochs, batch_size, lr, alpha, temperature, embed_loss, augment, seed, resume,
           patience, cache_dir, progress, log) -> _Trained:
    """Cache the teacher's outputs (beside the checkpoint, or in ``cache_dir``), then fit the student."""
    import torch

    from edgeopt.models.trainable import trainable
    from edgeopt.train import TrainConfig, cached_outputs, distributed, fit, objectives
    from edgeopt.train.batches import augment as augment_inputs
    from edgeopt.train.batches import collate, forward, pooled, tensors
    from edgeopt.train.checkpoint import fingerprint
    from edgeopt.train.outputs import lengths, outputs

    task, ds, evald = d.task, d.train, d.eval
    s_train, s_eval, s_model = student.train, student.eval, student.model
    names_t, names_s = teacher.io.input_names, s_model.io.input_names
    run_fp = fingerprint(teacher=str(Path(teacher_path).resolve()), student=str(student_path) if student_path else None,
                         layers=student.kept, data=str(data), eval=str(eval_data), limit=limit, task=task,
                         epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha, temperature=temperature,
                         loss=embed_loss, augment=augment, seed=seed, samples=len(ds),
                         world=distributed.world_size())
    ckdir = _checkpoint_dir(out)
    if distributed.is_main() and not resume and ckdir.exists():
        shutil.rmtree(ckdir)
    distributed.barrier()
    cache_key = hashlib.sha256(json.dumps({k: run_fp[k] for k in ("teacher", "data", "eval", "limit", "seed",
                                                                   "samples")}).encode()).hexdigest()[:16]
    cache_root = Path(cache_dir) if cache_dir else ckdir
    log(f"caching the teacher's outputs on {len(ds)} training samples")

    def teacher_run(part):
        def run(idx):
            with torch.inference_mode():
                return forward(teacher.module, collate(part, idx), names_t).float().numpy()
        return run

    t_train = cached_outputs(teacher_run(ds), len(ds), path=cache_root / f"teacher-train-{cache_key}.npy",
                             lengths=lengths(ds))
    t_eval = cached_outputs(teacher_run(evald), len(evald), path=cache_root / f"teacher-eval-{cache_key}.npy",
                            lengths=lengths(evald))
    untrained = (outputs(s_model.module, s_eval, names_s) if student.kept is not None and distributed.is_main()
                 else None)

    transformer_student = s_model.family in ("hf", "sentence-transformers")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr or (1e-4 if transformer_student else 1e-3),
                      patience=patience, seed=seed, checkpoint_dir=ckdir, resume=resume, progress=progress)
    labels = None if ds.labels is None or task == "embed" else torch.from_numpy(np.asarray(ds.labels))
    module = trainable(s_model)
    do_augment = augment and task != "embed"

    def loss_fn(model, idx, gen):
        args = tensors(collate(s_train, idx), names_s)
        if do_augment:
            args = augment_inputs(args, names_s, gen, tokenizer=s_model.tokenizer)
        s = pooled(model(*args), dict(zip(names_s, args)))
        t = torch.from_numpy(t_train[idx])
        return objectives.loss(task, s, t, None if labels is None else labels[idx], alpha=alpha,
                               temperature=temperature, embed_loss=embed_loss)

    def evaluate(m):
        return objectives.score(task, outputs(m, s_eval, names_s), t_eval, s_eval.labels)

    log(f"training the student ({task}, {len(ds)} samples, up to {epochs} epoch{'s' if epochs > 1 else ''})")
    result = fit(module, n_samples=len(ds), loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, fingerprint=run_fp,
                 lengths=lengths(s_train), log=log)
    return _Trained(result=result, lr=cfg.lr, augment=do_augment, teacher_eval=t_eval, untrained=untrained)


def _checkpoint_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.checkpoint"


def _measure(teacher: LoadedModel, student: _Student, d: _Data, trained: _Trained, log) -> Comparison:
    """Teacher vs the trained student on the held-out data (and as a search, with --judgments)."""
    from edgeopt.train.outputs import compare, outputs

    s_out = outputs(student.model.module, student.eval, student.model.io.input_names)
    quality = compare(d.task, trained.teacher_eval, s_out, student.eval.labels, trained.untrained)
    if d.judged is None:
        return quality
    from edgeopt.data.text import from_texts
    from edgeopt.distill.search import search_quality

    def encoder(m):
        return lambda texts: outputs(m.module, from_texts(texts, None, m.io, tokenizer=m.tokenizer,
                                                          max_length=m.max_length, source="judgments"),
                                     m.io.input_names)

    log(f"scoring teacher and student as a search: {len(d.judged.queries)} queries")
    search = search_quality(d.judged, list(d.eval.texts or []),
                            {"teacher": encoder(teacher), "student": encoder(student.model)})
    return dataclasses.replace(quality, search=search)


def _write(out: Path, teacher: LoadedModel, student: _Student, d: _Data, trained: _Trained, quality: Comparison,
           workdir: Path, *, teacher_path, student_path, data, eval_data, epochs, batch_size, alpha, temperature,
           embed_loss, seed, latency, log) -> DistillReport:
    """Save the student into OUT (atomically), time both after export (``latency``), write the report."""
    from edgeopt.atomic import output_dir
    from edgeopt.distill import latency as lat
    from edgeopt.distill.students import teacher_depth
    from edgeopt.train.batches import collate
    from edgeopt.train.report import write_report
    from edgeopt.train.write import class_names, disk_bytes, parameters, save_model

    kept, s_model = student.kept, student.model
    with output_dir(out, marker=REPORT) as stage:
        save_model(s_model, stage, task=d.task, example=collate(student.train, range(min(2, len(student.train)))),
                   class_names=class_names(data), state_dict=s_model.family == "state_dict")
        t_latency = s_latency = None
        if latency:
            t_latency = (student.budget.teacher if student.budget is not None
                         else lat.exported_latency(teacher, workdir, log=log))
            s_latency = lat.exported_latency(s_model, workdir, log=log)
            if "p50_ms" in t_latency and "p50_ms" in s_latency:
                s_latency["ratio"] = s_latency["p50_ms"] / t_latency["p50_ms"]
        report = DistillReport(
            task=d.task,
            teacher=TeacherSummary(source=str(teacher_path), family=teacher.family, parameters=parameters(teacher),
                                   bytes=disk_bytes(teacher.source),
                                   layers=teacher_depth(teacher) if kept is not None else None, latency=t_latency),
            student=StudentSummary(source=str(student_path) if student_path else f"{len(kept)} of the teacher's layers",
                                   parameters=parameters(s_model), layers=len(kept) if kept is not None else None,
                                   kept_layers=kept, bytes=disk_bytes(stage), latency=s_latency),
            data=DistillData(train=str(data), train_samples=len(d.train), labels=d.train.labels is not None,
                             eval=str(eval_data) if eval_data else f"held out from {data} (10 %)",
                             eval_samples=len(d.eval)),
            settings=DistillSettings(epochs=epochs, batch_size=batch_size, lr=trained.lr, alpha=alpha,
                                     temperature=temperature, loss=embed_loss if d.task == "embed" else "kd",
                                     augment=trained.augment, seed=seed),
            training=trained.result, quality=quality, latency_budget=student.budget)
        write_report(stage, report)
    return report


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
    from edgeopt.distill.students import check_layers
    from edgeopt.train import distributed
    from edgeopt.train.write import check_out

    out = Path(out)
    _check(student=student, student_layers=student_layers, latency_budget=latency_budget, data=data,
           eval_data=eval_data, alpha=alpha, temperature=temperature, embed_loss=embed_loss, eval_size=eval_size,
           limit=limit, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience)
    rank, _ = distributed.setup()
    main = rank == 0
    if main:
        check_out(out, "distill")

    teacher_m = _load(teacher, teacher_arch, teacher_arch_kwargs, trust_pickle, inputs, "teacher", data)
    if student_layers is not None:
        check_layers(teacher_m, student_layers)
    if latency_budget is not None:
        check_layers(teacher_m, 1)
    d = _read_data(teacher_m, data=data, eval_data=eval_data, task=task, limit=limit, eval_size=eval_size, seed=seed,
                   judgments=judgments, min_relevance=min_relevance)

    work = tempfile.TemporaryDirectory(prefix="edgeopt-distill-")
    try:
        workdir = Path(work.name)
        s = _make_student(teacher_m, d, workdir, student=student, student_layers=student_layers,
                          latency_budget=latency_budget, student_arch=student_arch,
                          student_arch_kwargs=student_arch_kwargs, trust_pickle=trust_pickle, inputs=inputs,
                          data=data, eval_data=eval_data, limit=limit, eval_size=eval_size, seed=seed, log=log)
        trained = _train(teacher_m, s, d, out, teacher_path=teacher, student_path=student, data=data,
                         eval_data=eval_data, limit=limit, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha,
                         temperature=temperature, embed_loss=embed_loss, augment=augment, seed=seed, resume=resume,
                         patience=patience, cache_dir=cache_dir, progress=progress, log=log)
        if not main:
            return DistillResult(out=None, task=d.task)
        quality = _measure(teacher_m, s, d, trained, log)
        report = _write(out, teacher_m, s, d, trained, quality, workdir, teacher_path=teacher, student_path=student,
                        data=data, eval_data=eval_data, epochs=epochs, batch_size=batch_size, alpha=alpha,
                        temperature=temperature, embed_loss=embed_loss, seed=seed, latency=latency, log=log)
        shutil.rmtree(_checkpoint_dir(out), ignore_errors=True)
        return DistillResult(out=out, task=d.task, report=report)
    finally:
        work.cleanup()

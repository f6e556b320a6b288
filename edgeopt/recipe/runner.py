"""Running a recipe: each step through its command's Python API, cached by content, resumable.

A step's input is the previous producing step's output (recipe.py says which). Before anything
runs, every step's key that can be known is computed, so ``--plan`` says hit or miss for each
without loading a model. Then each step either comes from the cache (verified) or runs into a
partial folder that becomes a cache entry only when it succeeded; OUT/<NN-step> links to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.errors import GateError, UsageError
from edgeopt.recipe import cache as cache_mod
from edgeopt.recipe.recipe import Recipe, Step

RESUMABLE = ("distill", "prune", "update")  # steps that checkpoint their training each epoch in OUT.checkpoint/


@dataclass
class StepPlan:
    step: Step
    key: str | None  # None: depends on an earlier step that is not cached yet
    status: str  # hit | miss | corrupted | after <step> | forced | skipped
    entry: cache_mod.Entry | None = None
    why: str | None = None

    def to_json(self) -> dict:
        return {"step": self.step.label, "name": self.step.name, "key": self.key, "status": self.status,
                "why": self.why}


@dataclass
class StepOutcome:
    step: Step
    cache: str  # hit | miss | skipped
    seconds: float  # this run (a hit: the verification)
    built_seconds: float | None  # how long the step took when it was built
    output: Path | None
    key: str | None
    config: dict
    results: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.step.name, "step": self.step.label, "kind": self.step.kind.name, "cache": self.cache,
                "seconds": round(self.seconds, 2),
                "built_seconds": None if self.built_seconds is None else round(self.built_seconds, 2),
                "output": None if self.output is None else str(self.output), "key": self.key,
                "config": self.config, **self.results}


def _jsonable(value):
    return {k: _jsonable(v) for k, v in value.items()} if isinstance(value, dict) else (
        [_jsonable(v) for v in value] if isinstance(value, (list, tuple)) else
        (str(value) if isinstance(value, Path) else value))


class Runner:
    def __init__(self, recipe: Recipe, *, cache_dir: Path | None = None, no_cache: bool = False,
                 log: Callable[[str], None] = lambda m: None):
        self.recipe = recipe
        self.cache = cache_mod.Cache(cache_dir or recipe.out / ".cache")
        self.no_cache = no_cache
        self.log = log
        self._versions = cache_mod.versions()
        self._outputs: dict[int, Path] = {}  # step index -> its cached output
        self._model_hash: str | None = None
        self.name = recipe.name  # every step's output folder: export and package name the model by it

    # -- keys -------------------------------------------------------------------------------------
    def input_path(self, step: Step) -> Path | None:
        return self.recipe.model if step.input_step is None else self._outputs.get(step.input_step)

    def kwargs(self, step: Step) -> dict | None:
        """The step's keywords beyond its input and output; None while an earlier output is missing."""
        kw = dict(step.config.given())
        self._fill_data(step, kw)
        self._loading_options(step, kw)
        return self._wire(step, kw)

    def _fill_data(self, step: Step, kw: dict) -> None:
        """The recipe's data into the data keywords the step does not set itself."""
        if step.kind.name == "export" and not kw.get("int8"):
            return  # export reads data only for the INT8 gate
        for name, sources in step.kind.data_keys:
            given = next((self.recipe.data[s] for s in sources if s in self.recipe.data), None)
            if name not in kw and given is not None:
                kw[name] = str(given)

    def _loading_options(self, step: Step, kw: dict) -> None:
        """arch / arch_kwargs / trust_pickle for the step that reads the recipe's model; inputs for all."""
        opts, kind = self.recipe.model_options, step.kind
        if step.input_step is None:
            prefix = "teacher_" if kind.name == "distill" else ""
            for opt in ("arch", "arch_kwargs"):
                if opt in opts and f"{prefix}{opt}" in kind.wired:
                    kw.setdefault(f"{prefix}{opt}", opts[opt])
            if opts.get("trust_pickle") and "trust_pickle" in kind.wired:
                kw.setdefault("trust_pickle", True)
        elif kind.name in ("prune", "update"):  # they need the module's code: a student built by student_arch
            source = self.recipe.steps[step.input_step]
            given = source.config.given() if source.kind.name == "distill" else {}
            if "student_arch" in given:  # distill kept its weights beside the program (model.state.pt)
                kw.setdefault("arch", given["student_arch"])
                if "student_arch_kwargs" in given:
                    kw.setdefault("arch_kwargs", given["student_arch_kwargs"])
        if "inputs" in opts and "inputs" in kind.wired:
            kw.setdefault("inputs", list(opts["inputs"]))

    def _wire(self, step: Step, kw: dict) -> dict | None:
        """What a step takes from the recipe or earlier steps beyond its input."""
        r, kind = self.recipe, step.kind.name
        if (kind == "export" and kw.get("int8") and "reference" not in kw and step.input_step is not None
                and "arch" not in r.model_options):  # a teacher that loads alone (a folder, .pt2, .onnx)
            kw["reference"] = str(r.model)  # score INT8 against the teacher, not the distilled / pruned model
        if kind == "package":
            bench = self._latest(step, "bench")
            if bench is not None and "bench" not in kw:
                if bench not in self._outputs:
                    return None
                kw["bench"] = str(self._outputs[bench] / "bench.json")
        if kind == "install":
            kw.setdefault("dest", str(r.out / "device"))
            sign_key = self._package_key(step)
            pub = Path(sign_key).with_suffix(".pub") if sign_key else None
            if "public_key" not in kw and pub is not None and pub.is_file():
                kw["public_key"] = str(pub)
            elif "public_key" not in kw and sign_key is None:
                kw.setdefault("allow_unsigned", True)
        return kw

    def _latest(self, step: Step, produces: str) -> int | None:
        return next((s.index for s in reversed(self.recipe.steps[:step.index]) if s.kind.produces == produces), None)

    def _package_key(self, step: Step) -> str | None:
        pkg = step.input_step
        return None if pkg is None else self.recipe.steps[pkg].config.given().get("sign_key")

    def key(self, step: Step) -> str | None:
        if step.input_step is None:
            if self._model_hash is None:
                self._model_hash = cache_mod.content_hash(self.recipe.model)
            source = self._model_hash
        elif step.input_step in self._outputs:
            source = cache_mod.content_hash(self._outputs[step.input_step])
        else:
            return None
        kw = self.kwargs(step)
        if kw is None:
            return None
        normalized = {k: ({"sha256": cache_mod.content_hash(Path(v))} if isinstance(v, str) and k != "dest"
                          and os.path.exists(v) else v) for k, v in kw.items()}
        return cache_mod.step_key({"step": step.kind.name, "input": source, "config": _jsonable(normalized),
                                   "versions": self._versions})

    # -- plan -------------------------------------------------------------------------------------
    def plan(self, *, start: Step | None = None, only: Step | None = None) -> list[StepPlan]:
        rows: list[StepPlan] = []
        blocked: str | None = None
        for step in self.recipe.steps:
            if only is not None and step is not only:
                entry = self._lookup_quiet(step)
                rows.append(StepPlan(step, entry.key if entry else None, "skipped", entry))
                continue
            key = self.key(step)
            if key is None:
                rows.append(StepPlan(step, None, f"after {blocked or 'an earlier step'}"))
                blocked = blocked or step.name
                continue
            forced = self.no_cache or (start is not None and step.index >= start.index) or only is step
            if step.kind.name == "install":  # a side effect on DEST, not a cached output
                rows.append(StepPlan(step, key, "forced" if forced else "run"))
                continue
            entry, why = (None, None) if forced else self.cache.lookup(key, remove=False)
            if entry is not None:
                self._outputs[step.index] = entry.output
                rows.append(StepPlan(step, key, "hit", entry))
            else:
                rows.append(StepPlan(step, key, "forced" if forced else ("corrupted" if why else "miss"), why=why))
                blocked = blocked or step.name
        return rows

    def _lookup_quiet(self, step: Step) -> cache_mod.Entry | None:
        key = self.key(step)
        if key is None:
            return None
        entry, _ = self.cache.lookup(key, remove=False)
        if entry is not None:
            self._outputs[step.index] = entry.output
        return entry

    # -- run --------------------------------------------------------------------------------------
    def run(self, *, start: Step | None = None, only: Step | None = None) -> list[StepOutcome]:
        if start is not None:
            for s in self.recipe.steps[:start.index]:
                if s.kind.name != "install" and self._lookup_quiet(s) is None:
                    raise UsageError(f"--from {start.name}: step {s.name} before it is not cached; run without "
                                     "--from first")
        if only is not None:
            for s in self.recipe.steps[:only.index]:
                self._lookup_quiet(s)
            if only.input_step is not None and only.input_step not in self._outputs:
                raise UsageError(f"--only {only.name}: its input ({self.recipe.steps[only.input_step].name}) is "
                                 "not cached; run the steps before it first")
        outcomes = []
        n = len(self.recipe.steps)
        for step in self.recipe.steps:
            if only is not None and step is not only:
                outcomes.append(self._skipped(step))
                continue
            forced = self.no_cache or (start is not None and step.index >= start.index) or only is step
            outcomes.append(self._one(step, forced, f"[{step.index + 1}/{n}] {step.name}"))
        return outcomes

    def _skipped(self, step: Step) -> StepOutcome:
        out = self._outputs.get(step.index)
        return StepOutcome(step, "skipped", 0.0, None, self._link(step, out) if out else None, None,
                           _jsonable(step.config.given()))

    def _one(self, step: Step, forced: bool, label: str) -> StepOutcome:
        from edgeopt.recipe.summaries import summarize

        t0 = time.perf_counter()
        key = self.key(step)
        assert key is not None  # every earlier step has run or come from the cache
        config = _jsonable(step.config.given())
        if step.kind.name == "install":
            results, status = self._install(step)
            self.log(f"{label}: {status} ({time.perf_counter() - t0:.1f} s)")
            return StepOutcome(step, status, time.perf_counter() - t0, None, Path(self.kwargs(step)["dest"]), key,
                               config, results)
        entry, why = (None, None) if forced else self.cache.lookup(key)
        if why:
            self.log(f"{label}: cache entry {key[:12]} is corrupted ({why}); rebuilding it")
        if entry is not None:
            self.log(f"{label}: cache hit ({key[:12]})")
            status, built = "hit", entry.record.get("seconds")
        else:
            self.log(f"{label}: running")
            with self.cache.locked(key):
                entry = self._build(step, key)
            status, built = "miss", time.perf_counter() - t0
            self.log(f"{label}: done in {built:.1f} s")
        self._outputs[step.index] = entry.output
        link = self._link(step, entry.output)
        return StepOutcome(step, status, time.perf_counter() - t0, built, link, key, config,
                           summarize(step.kind.produces, entry.output))

    def _build(self, step: Step, key: str) -> cache_mod.Entry:
        partial = self.cache.partial(key)
        checkpoints = partial / f"{self.name}.checkpoint"  # update keeps one per candidate strength below it
        resume = step.kind.name in RESUMABLE and checkpoints.is_dir() and any(checkpoints.rglob("last.pt"))
        if partial.exists() and not resume:
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        if resume:
            self.log(f"{step.name}: resuming training from the checkpoint an interrupted run left")
        t0 = time.perf_counter()
        try:
            self._call(step, partial / self.name, resume)
        except KeyboardInterrupt:
            raise  # the partial folder stays: distill / prune / update resume from their checkpoints
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # a failure is never cached
            raise
        return self.cache.commit(key, partial, {"step": step.kind.name, "name": step.name, "key": key,
                                                "seconds": time.perf_counter() - t0,
                                                "config": _jsonable(step.config.given()),
                                                "input": str(self.input_path(step)), "versions": self._versions},
                                 self.name)

    def _call(self, step: Step, out: Path, resume: bool) -> None:
        kind, fn = step.kind, step.kind.load()
        kw = self.kwargs(step)
        kw[kind.input_key] = str(self.input_path(step))
        log = lambda m: self.log(f"  {step.name}: {m}")  # noqa: E731
        if kind.produces == "model":
            kw.update(out=str(out), log=log)
            if kind.name in RESUMABLE:
                kw["resume"] = resume
            fn(**kw)
        elif kind.name == "export":
            result = fn(kw.pop("model"), str(out), **kw, log=log)
            if not result.passed:
                raise GateError(f"step {step.name}: {result.failure}")
        elif kind.name == "bench":
            import json

            result = fn(kw.pop("artifact"), **kw, log=log)
            out.mkdir(parents=True, exist_ok=True)
            (out / "bench.json").write_text(json.dumps(result.document, indent=2) + "\n")
            if result.failure:
                raise GateError(f"step {step.name}: {result.failure}")
        elif kind.name == "package":
            import json

            name = json.loads((Path(kw["out"]) / "manifest.json").read_text())["model"]["name"]
            out.mkdir(parents=True, exist_ok=True)
            fn(**kw, bundle=str(out / f"{name}.edgepkg"), log=log)
        else:  # pragma: no cover - recipe.py admits only the kinds above
            raise UsageError(f"step {step.name}: nothing runs {kind.name}")

    def _install(self, step: Step) -> tuple[dict, str]:
        from edgeopt.bundle.delta import read_head
        from edgeopt.bundle.installation import _installed_version

        kw = self.kwargs(step)
        bundle = next(iter(sorted(self._outputs[step.input_step].glob("*.edgepkg"))))
        manifest, _ = read_head(bundle)
        name, version = manifest["model"]["name"], str(manifest["version"])
        dest = Path(kw["dest"])
        if (dest / name).is_dir() and _installed_version(dest / name) == version:
            import json

            installed = json.loads((dest / name / "current" / "manifest.json").read_text())
            if installed.get("files") != manifest.get("files"):
                raise UsageError(f"step {step.name}: a different {name} {version} is installed in {dest}; give the "
                                 "package step a new version")
            return {"installed": {"name": name, "version": version, "current": str(dest / name / "current")}}, "hit"
        result = step.kind.load()(bundle=str(bundle), **kw, log=lambda m: self.log(f"  {step.name}: {m}"))
        return {"installed": result.to_json()}, "miss"

    def _link(self, step: Step, target: Path) -> Path:
        """OUT/<NN-step> -> the cache entry's output (relative when the cache is inside OUT)."""
        out = self.recipe.out
        link = out / step.label
        rel = os.path.relpath(target, out)
        tmp = out / f".{step.label}.link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(rel, tmp)
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link)
        os.replace(tmp, link)
        return link


"""One typed config per recipe step, built from its command's Python API function.

A step's keys are the keyword arguments of the function the CLI calls too (DESIGN.md: the CLI
flags in snake_case), so a flag, a keyword and a recipe key cannot disagree: the config classes
are made from the function's signature, not written out a second time. Each is a frozen dataclass
validated in ``__post_init__`` (types from the annotations, ranges from ``RANGES``); the function
checks the rest when it runs. The keywords a recipe wires itself (the input model, the output
path, logging) are not keys a step may set.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeopt.errors import UsageError


@dataclass(frozen=True)
class StepKind:
    name: str
    function: str  # "module:function"
    input_key: str  # the keyword that takes the previous step's output
    out_key: str | None  # the keyword that takes this step's output path (None: writes nowhere)
    produces: str  # "model" | "export" | "bench" | "bundle" | "install"
    data_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # keyword <- first recipe data entry given
    wired: tuple[str, ...] = ()  # further keywords the runner sets
    consumes: str = "model"  # what its input must be

    def load(self):
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)


_WIRED = ("log", "progress", "latency_fn", "resume", "cache_dir")
STEPS: dict[str, StepKind] = {k.name: k for k in (
    StepKind("distill", "edgeopt.distill.run:distill", "teacher", "out", "model",
             (("data", ("train",)), ("eval_data", ("eval",)), ("judgments", ("judgments",))),
             ("teacher_arch", "teacher_arch_kwargs", "trust_pickle", "inputs")),
    StepKind("prune", "edgeopt.prune.run:prune", "model", "out", "model",
             (("data", ("train",)), ("eval_data", ("eval",))), ("arch", "arch_kwargs", "trust_pickle", "inputs")),
    StepKind("update", "edgeopt.update.run:update", "model", "out", "model",
             (("data", ("new", "train")), ("old_data", ("old",))), ("arch", "arch_kwargs", "trust_pickle", "inputs")),
    StepKind("export", "edgeopt.export.api:export", "model", "out", "export",
             (("calib", ("calib", "train")), ("eval_data", ("eval",))),
             ("arch", "arch_kwargs", "trust_pickle", "inputs")),
    StepKind("bench", "edgeopt.bench.api:bench", "artifact", None, "bench", (),
             ("arch", "arch_kwargs", "trust_pickle", "inputs"), consumes="export"),
    StepKind("package", "edgeopt.bundle.build:package", "out", "bundle", "bundle", (), consumes="export"),
    StepKind("install", "edgeopt.bundle.installation:install", "bundle", None, "install", (), consumes="bundle"),
)}

# key -> (minimum, maximum, whether the bounds are exclusive), where the function's own checks come
# only after minutes of earlier steps
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "ratio": (0, 1, True), "head_ratio": (0, 1, False), "target_speedup": (1, None, True),
    "latency_budget": (0, 1, True), "alpha": (0, 1, False), "epochs": (1, None, False),
    "recover_epochs": (0, None, False), "batch_size": (1, None, False), "student_layers": (1, None, False),
    "cold_runs": (1, None, False), "max_drop": (0, None, False), "max_forgetting": (0, None, False),
    "mac_weight": (0, None, False), "calib_size": (1, None, False), "eval_size": (1, None, False),
}


def _allowed(annotation: str) -> set[str]:
    """The kinds of YAML value an annotation (a string, as ``from __future__ import annotations``
    leaves it) accepts: 'none', 'bool', 'int', 'float', 'str', 'list', 'dict'; empty = anything."""
    kinds: set[str] = set()
    for part in annotation.replace("'", "").replace('"', "").split("|"):
        p = part.strip()
        head = p.split("[")[0].split(".")[-1]
        if head == "None":
            kinds.add("none")
        elif head == "bool":
            kinds.add("bool")
        elif head == "int":
            kinds.add("int")
        elif head == "float":
            kinds |= {"float", "int"}
        elif head in ("str", "Path", "PathLike"):
            kinds.add("str")
        elif head in ("Sequence", "list", "tuple"):
            kinds.add("list")
            if head == "Sequence" and "str" in p:
                kinds.add("str")  # "onnx,openvino" is accepted where a list of names is
        elif head == "dict":
            kinds.add("dict")
        else:
            return set()
    return kinds


def _kind(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, t):
            return name
    return type(value).__name__


_NAMES = {"none": "null", "bool": "true/false", "int": "an integer", "float": "a number", "str": "a string or path",
          "list": "a list", "dict": "a mapping"}


class StepConfig:
    """Base of the generated configs: ``DistillConfig(student_layers=3, epochs=2)``."""

    step: ClassVar[StepKind]
    types: ClassVar[dict[str, set[str]]]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is _UNSET:
                continue
            allowed = self.types.get(f.name) or set()
            kind = _kind(value)
            if allowed and kind not in allowed:
                want = " or ".join(_NAMES[k] for k in sorted(allowed))
                raise ConfigError(f.name, f"{f.name} must be {want}, got {value!r}")
            bounds = RANGES.get(f.name)
            if bounds and isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi, exclusive = bounds
                bad = ((lo is not None and (value <= lo if exclusive else value < lo))
                       or (hi is not None and (value >= hi if exclusive else value > hi)))
                if bad:
                    rng = (f"in ({lo}, {hi})" if exclusive else f"in [{lo}, {hi}]") if hi is not None else (
                        f"> {lo}" if exclusive else f">= {lo}")
                    raise ConfigError(f.name, f"{f.name} must be {rng}, got {value!r}")

    def given(self) -> dict[str, Any]:
        """The keys the recipe set, normalized (sorted)."""
        return {f.name: getattr(self, f.name) for f in sorted(dataclasses.fields(self), key=lambda f: f.name)
                if getattr(self, f.name) is not _UNSET}


class _Unset:
    def __repr__(self):
        return "<unset>"


_UNSET = _Unset()


class ConfigError(UsageError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


_CLASSES: dict[str, type] = {}


def config_class(step: str) -> type:
    """The frozen config dataclass of ``step`` (``DistillConfig`` for "distill")."""
    if step in _CLASSES:
        return _CLASSES[step]
    kind = STEPS[step]
    sig = inspect.signature(kind.load())
    skip = {kind.input_key, kind.out_key, *_WIRED}
    fields, types = [], {}
    for name, p in sig.parameters.items():
        if name in skip or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        fields.append((name, Any, dataclasses.field(default=_UNSET)))
        types[name] = _allowed(p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", ""))
    cls = dataclasses.make_dataclass(f"{step.capitalize()}Config", fields, bases=(StepConfig,), frozen=True,
                                     namespace={"step": kind, "types": types, "__module__": __name__})
    _CLASSES[step] = cls
    return cls


def make_config(step: str, keys: dict) -> StepConfig:
    """The config for a recipe step's mapping; ConfigError names the key (and suggests one)."""
    cls = config_class(step)
    names = [f.name for f in dataclasses.fields(cls)]
    kind = STEPS[step]
    for key in keys:
        if key not in names:
            if key in (kind.input_key, kind.out_key):
                raise ConfigError(key, f"{key!r} is wired by the recipe (the previous step's output / this step's "
                                       "folder); drop it")
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {step} takes: {', '.join(sorted(names))}"
            raise ConfigError(key, f"unknown key {key!r}{hint}")
    return cls(**keys)


def __getattr__(name: str):  # DistillConfig, PruneConfig, ... built on first use
    for step in STEPS:
        if name == f"{step.capitalize()}Config":
            return config_class(step)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A recipe, validated before any work: each root cause is reported once, as one line naming the
step, the key and the line of the file (DESIGN.md "Recipes")."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.recipe import configs
from edgeopt.recipe.source import Source, read

TOP_KEYS = ("name", "model", "arch", "arch_kwargs", "inputs", "trust_pickle", "data", "out", "steps", "gates", "measure")
DATA_KEYS = ("train", "calib", "eval", "judgments", "new", "old")
GATE_VS = ("teacher-stock-int8", "teacher-fp32")
# step keys that name files: resolved against the recipe's folder, like the data
PATH_KEYS = {"data", "eval_data", "calib", "judgments", "old_data", "old_eval", "student", "reference", "sign_key",
             "base", "golden", "baseline", "profiles_file", "public_key", "dest"}
EMBEDDED = "embedded:all-MiniLM-L6-v2"
INT8_ONLY = ("calib", "eval_data", "metric", "max_drop", "reference", "eval_batch")  # export's INT8 gate keys


@dataclass(frozen=True)
class QualityGate:
    min_ratio: float  # the final artifact's quality / the teacher's, on data.eval (and judgments)


@dataclass(frozen=True)
class LatencyGate:
    max_ratio: float
    vs: str = "teacher-stock-int8"


@dataclass(frozen=True)
class Measure:
    rounds: int = 8  # interleaved latency rounds
    runs: int = 30  # calls per burst
    queries: int = 300  # judged queries scored (seeded sample)
    eval_size: int = 1000  # held-out texts / samples scored (and the search pool's distractors)
    metric: str | None = None  # labelled samples: top1, recall@K, mrr@K, auc... (edgeopt.update.metrics)


@dataclass(frozen=True)
class Step:
    index: int  # 0-based position
    name: str  # the kind, with -2, -3 ... for repeats
    kind: configs.StepKind
    config: configs.StepConfig
    input_step: int | None  # index of the step whose output it takes; None: the recipe's model
    line: int

    @property
    def label(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"


@dataclass(frozen=True)
class Recipe:
    path: Path
    model: Path
    name: str  # the model's name in exports and bundles (the installed folder under DEST)
    model_options: dict  # arch, arch_kwargs, inputs, trust_pickle for the step that reads the model
    data: dict[str, Path]
    out: Path
    steps: tuple[Step, ...]
    quality_gate: QualityGate | None = None
    latency_gate: LatencyGate | None = None
    measure: Measure = field(default_factory=Measure)

    def step(self, ref: str) -> Step:
        """A step by name (``prune``, ``export-2``) or 1-based number, for --from / --only."""
        for s in self.steps:
            if ref in (s.name, str(s.index + 1), s.label):
                return s
        names = [s.name for s in self.steps]
        close = difflib.get_close_matches(ref, names, n=1)
        raise UsageError(f"no step {ref!r} in {self.path}" + (f"; did you mean {close[0]!r}?" if close else
                                                               f"; its steps: {', '.join(names)}"))


def _unknown(key, allowed, where: str, src: Source, *path) -> UsageError:
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(allowed)}"
    return UsageError(f"{src.path}{src.line(*path, key)}: unknown {where} key {key!r}; {hint}")


def _path(src: Source, value, *keys) -> Path:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{src.path}{src.line(*keys)}: {'.'.join(map(str, keys))} must be a path, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (src.path.parent / p)


def _model(src: Source) -> Path:
    if "model" not in src.data:
        raise UsageError(f"{src.path}: no 'model'; name the teacher checkpoint (any MODEL form edgeopt export takes)")
    if src.data["model"] == EMBEDDED:
        from edgeopt.models.embedded import embedded_model_path

        return embedded_model_path()
    p = _path(src, src.data["model"], "model")
    if not p.exists():
        raise UsageError(f"{src.path}{src.line('model')}: model {src.data['model']}: no such file or folder "
                         f"(paths are relative to the recipe's folder)")
    return p


def _data(src: Source) -> dict[str, Path]:
    data = src.data.get("data") or {}
    if not isinstance(data, dict):
        raise UsageError(f"{src.path}{src.line('data')}: data must be a mapping of {', '.join(DATA_KEYS)}")
    out = {}
    for key, value in data.items():
        if key not in DATA_KEYS:
            raise _unknown(key, DATA_KEYS, "data", src, "data")
        p = _path(src, value, "data", key)
        if not p.exists() and ":" not in str(value):
            raise UsageError(f"{src.path}{src.line('data', key)}: data.{key}: no such file or folder: {value}")
        out[key] = p if p.exists() else Path(value)
    return out


def _resolve_paths(src: Source, keys: dict, step_path: tuple) -> dict:
    out = dict(keys)
    for key in PATH_KEYS & set(keys):
        if isinstance(keys[key], str):
            p = _path(src, keys[key], *step_path, key)
            if key != "dest" and not p.exists() and ":" not in keys[key]:
                raise UsageError(f"{src.path}{src.line(*step_path, key)}: {step_path[-1]}: {key} {keys[key]}: no "
                                 "such file or folder (paths are relative to the recipe's folder)")
            out[key] = str(p)
    for key in ("arch", "student_arch", "teacher_arch"):  # file.py:factory
        value = keys.get(key)
        if isinstance(value, str) and ".py:" in value and not Path(value.split(":")[0]).is_absolute():
            out[key] = str(src.path.parent / value)
    return out


def _steps(src: Source, has_data: dict) -> tuple[Step, ...]:
    raw = src.data.get("steps")
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{src.path}{src.line('steps')}: steps must be a non-empty list such as "
                         "[distill: {...}, export: {int8: true}]")
    steps: list[Step] = []
    seen: dict[str, int] = {}
    latest: dict[str, int | None] = {"model": None}  # produced kind -> index of the step that made it last
    for i, item in enumerate(raw):
        where = f"{src.path}{src.line('steps', i)}"
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise UsageError(f"{where}: each step is one name with its keys, e.g. '- export: {{int8: true}}'")
        (kind_name, keys), = item.items()
        if kind_name not in configs.STEPS:
            raise _unknown(kind_name, list(configs.STEPS), "step", src, "steps", i)
        keys = dict(keys or {})
        if not isinstance(keys, dict):
            raise UsageError(f"{where}: {kind_name}'s keys must be a mapping, got {keys!r}")
        kind = configs.STEPS[kind_name]
        seen[kind_name] = seen.get(kind_name, 0) + 1
        name = kind_name if seen[kind_name] == 1 else f"{kind_name}-{seen[kind_name]}"
        source = keys.pop("input", None)
        consumed = kind.consumes
        if source is not None:  # an explicit input: an earlier step by name, or 'model'
            if source == "model":
                input_step = None
                produced = "model"
            else:
                match = next((s for s in steps if s.name == source), None)
                if match is None:
                    raise UsageError(f"{src.path}{src.line('steps', i, kind_name, 'input')}: input {source!r} is "
                                     f"not an earlier step; give 'model' or one of: "
                                     f"{', '.join(s.name for s in steps) or '(none before it)'}")
                input_step, produced = match.index, match.kind.produces
            if produced != consumed:
                raise UsageError(f"{where}: {name} takes {_what(consumed)}, but {source} gives {_what(produced)}")
        else:
            if consumed not in latest:
                raise UsageError(f"{where}: {name} takes {_what(consumed)}, and no step before it writes one; "
                                 f"put a step that does before it")
            input_step = latest[consumed]
            if consumed == "model" and steps and steps[-1].kind.produces not in ("model",):
                prev = steps[-1]
                raise UsageError(f"{where}: {name} takes a model, but the step before it ({prev.name}) writes "
                                 f"{_what(prev.kind.produces)}; put {name} before {prev.name}, or give "
                                 f"'input: <an earlier step>'")
        try:
            config = configs.make_config(kind_name, _resolve_paths(src, keys, ("steps", i, kind_name)))
        except configs.ConfigError as e:
            raise UsageError(f"{src.path}{src.line('steps', i, kind_name, e.key)}: step {name}: {e}") from None
        needs_int8 = sorted(k for k in INT8_ONLY if getattr(config, k, configs._UNSET) is not configs._UNSET)
        if kind.name == "export" and needs_int8 and getattr(config, "int8", None) is not True:
            raise UsageError(f"{src.path}{src.line('steps', i, kind_name, needs_int8[0])}: step {name}: "
                             f"{', '.join(needs_int8)} apply to int8; add 'int8: true'")
        for kw, sources in kind.data_keys:
            if kw in ("data",) and getattr(config, kw, None) is configs._UNSET and not any(s in has_data
                                                                                        for s in sources):
                raise UsageError(f"{where}: step {name} needs data: give data.{sources[0]} in the recipe or "
                                 f"'{kw}:' in the step")
        steps.append(Step(i, name, kind, config, input_step, src.lines.get(("steps", i), 0)))
        latest[kind.produces] = i
    return tuple(steps)


def _what(kind: str) -> str:
    return {"model": "a model", "export": "an export folder", "bench": "a benchmark",
            "bundle": "a bundle", "install": "an installed model"}[kind]


def _gates(src: Source) -> tuple[QualityGate | None, LatencyGate | None]:
    gates = src.data.get("gates") or {}
    if not isinstance(gates, dict):
        raise UsageError(f"{src.path}{src.line('gates')}: gates must be a mapping with quality and/or latency")
    quality = latency = None
    for key, value in gates.items():
        if key not in ("quality", "latency"):
            raise _unknown(key, ("quality", "latency"), "gates", src, "gates")
        value = value or {}
        allowed = ("min_ratio",) if key == "quality" else ("max_ratio", "vs")
        for k in value:
            if k not in allowed:
                raise _unknown(k, allowed, f"gates.{key}", src, "gates", key)
        bound = value.get(allowed[0])
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound <= 10:
            raise UsageError(f"{src.path}{src.line('gates', key, allowed[0])}: gates.{key}.{allowed[0]} must be a "
                             f"number > 0 (a ratio), got {bound!r}")
        if key == "quality":
            quality = QualityGate(float(bound))
        else:
            vs = value.get("vs", GATE_VS[0])
            if vs not in GATE_VS:
                raise UsageError(f"{src.path}{src.line('gates', key, 'vs')}: gates.latency.vs must be one of "
                                 f"{', '.join(GATE_VS)}, got {vs!r}")
            latency = LatencyGate(float(bound), vs)
    return quality, latency


def _measure(src: Source) -> Measure:
    value = src.data.get("measure") or {}
    if not isinstance(value, dict):
        raise UsageError(f"{src.path}{src.line('measure')}: measure must be a mapping")
    names = list(Measure.__dataclass_fields__)
    for k, v in value.items():
        if k not in names:
            raise _unknown(k, names, "measure", src, "measure")
        if k == "metric":
            _check_metric(v, src)
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{src.path}{src.line('measure', k)}: measure.{k} must be an integer >= 1, got {v!r}")
    return Measure(**value)


def _check_metric(value, src: Source) -> None:
    from edgeopt.update import metrics

    where = f"{src.path}{src.line('measure', 'metric')}: measure.metric"
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a metric name such as top1, recall@20 or auc, got {value!r}")
    for task in ("classify", "binary", "regress"):
        try:
            name, _ = metrics.parse(value, task)
        except UsageError as e:
            if "unknown" in str(e):
                raise UsageError(f"{where}: {e}".replace("--metric ", "")) from None
            continue
        if not metrics.higher_is_better(name) and "quality" in (src.data.get("gates") or {}):
            raise UsageError(f"{where} {value} is lower-is-better; the quality gate (a ratio to the teacher's) "
                             "needs one such as auc, top1 or recall@K")
        return


def load_recipe(path: str | Path, *, out: str | Path | None = None, model: str | Path | None = None) -> Recipe:
    """Read and validate a recipe; ``out`` / ``model`` override the file's (``-o``, the demo)."""
    src = read(path)
    for key in src.data:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, "recipe", src)
    model_path = Path(model) if model is not None else _model(src)
    data = _data(src)
    options = {k: src.data[k] for k in ("arch", "arch_kwargs", "inputs", "trust_pickle") if k in src.data}
    if isinstance(options.get("arch"), str) and ".py:" in options["arch"]:
        options["arch"] = str(_path(src, options["arch"].split(":")[0], "arch")) + ":" + options["arch"].split(":")[1]
    if "inputs" in options and not (isinstance(options["inputs"], list)
                                    and all(isinstance(x, str) for x in options["inputs"])):
        raise UsageError(f"{src.path}{src.line('inputs')}: inputs must be a list of NAME:SHAPE:DTYPE strings")
    steps = _steps(src, data)
    quality, latency = _gates(src)
    if out is None:
        out = _path(src, src.data["out"], "out") if "out" in src.data else src.path.parent / f"{src.path.stem}-out"
    name = src.data.get("name", model_path.stem or model_path.name)
    from edgeopt.bundle.versions import safe_name

    if not isinstance(name, str) or not safe_name(name):
        raise UsageError(f"{src.path}{src.line('name')}: name {name!r} cannot name a folder; use letters, digits, "
                         "'.', '_' and '-'")
    return Recipe(src.path, model_path, name, options, data, Path(out), steps, quality, latency, _measure(src))

"""Make any torch model look the same to the exporter and the verifier.

``ExportAdapter`` calls the wrapped model positionally or by keyword (keyword-only ``forward``
signatures, as in Hugging Face models) and flattens dict / ModelOutput / tuple results into a
tuple in a fixed, named order.
"""

from __future__ import annotations

import inspect

import numpy as np

from edgeopt.errors import UsageError, first_line
from edgeopt.spec import IOSpec, TensorSpec

_SKIP_OUTPUTS = {"past_key_values", "hidden_states", "attentions", "cross_attentions"}


def _torch():
    import torch

    return torch


def call_style(module, names: list[str]) -> str:
    """'kwargs' when forward names every input as a parameter (or takes **kwargs); 'dict' when it
    takes one dict of named tensors (torch-rechub style ``forward(x)``: the parameter is annotated
    as a dict, or several inputs meet one parameter); else 'args'."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return "args"
    if all(n in params for n in names):
        return "kwargs"
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 1 and len(params) == 1:
        note = positional[0].annotation
        text = note if isinstance(note, str) else getattr(note, "__name__", str(note))
        if text.split("[")[0].split(".")[-1] in ("dict", "Dict", "Mapping", "MutableMapping") or len(names) > 1:
            return "dict"
    return "args"


class MissingInput(LookupError):
    """A dict-input model read a key that no ``--input`` names."""


class ReadKeys(dict):
    """The dict a dict-input model gets while edgeopt probes it: records the keys its forward reads."""

    def __init__(self, *args, reads: set):
        super().__init__(*args)
        self.reads = reads

    def __getitem__(self, key):
        if key not in self:
            raise MissingInput(f"its forward reads x[{key!r}], which no --input names "
                               f"(given: {', '.join(dict.keys(self))})")
        self.reads.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def _all(self):
        self.reads.update(dict.keys(self))

    def __iter__(self):
        self._all()
        return super().__iter__()

    def items(self):
        self._all()
        return super().items()

    def values(self):
        self._all()
        return super().values()


def flatten_outputs(out) -> list[tuple[str, object]]:
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [("output", out)]
    if isinstance(out, dict):  # includes transformers' ModelOutput
        return [(k, v) for k, v in out.items() if isinstance(v, torch.Tensor) and k not in _SKIP_OUTPUTS]
    if isinstance(out, (list, tuple)):
        items = [v for v in out if isinstance(v, torch.Tensor)]
        return [("output" if len(items) == 1 else f"output{i}", v) for i, v in enumerate(items)]
    raise UsageError(f"model returned {type(out).__name__}; edgeopt needs tensors, tuples or dicts of tensors")


def make_adapter(module, input_names: list[str], output_keys: list[str] | None = None, style: str | None = None):
    torch = _torch()

    class ExportAdapter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module
            self.style = style or call_style(module, input_names)
            self.output_keys = output_keys
            self.reads = None  # a set while probing a dict-input model: the keys its forward read

        def forward(self, *args):
            if self.style == "kwargs":
                out = self.inner(**dict(zip(input_names, args)))
            elif self.style == "dict":
                x = dict(zip(input_names, args))
                out = self.inner(x if self.reads is None else ReadKeys(x, reads=self.reads))
            else:
                out = self.inner(*args)
            flat = dict(flatten_outputs(out))
            if self.output_keys is None:  # first (probe) call fixes names and order
                self.output_keys = list(flat)
            return tuple(flat[k] for k in self.output_keys)

    adapter = ExportAdapter()
    adapter.training = False  # not .eval(): torch.export modules refuse train()/eval()
    return adapter


def random_feeds(inputs: tuple[TensorSpec, ...], *, batch: int, seed: int, id_ranges: dict[str, int] | None = None,
                 float_ids: int | None = None) -> dict[str, np.ndarray]:
    """Seeded sample inputs from specs: normal floats, non-negative ints below ``id_ranges[name]``
    (the rows of the table they index, one number or one per column, models/ids.py; else 0..9),
    random bools. ``float_ids``: the model keeps ids in float tensors, so floats are whole numbers
    below it too."""
    rng = np.random.default_rng(seed)
    id_ranges = id_ranges or {}
    feeds = {}
    for spec in inputs:
        shape = spec.example_shape({"batch": batch})
        if float_ids and (spec.dtype.startswith("float") or spec.dtype == "bfloat16"):
            arr = rng.integers(0, float_ids, size=shape).astype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        elif spec.dtype.startswith("float") or spec.dtype == "bfloat16":
            arr = rng.standard_normal(shape).astype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        elif spec.dtype == "bool":
            arr = rng.random(shape) > 0.5
        elif spec.name.endswith("mask"):  # attention masks: attend everywhere
            arr = np.ones(shape, dtype=spec.dtype)
        elif spec.name == "token_type_ids":  # segment ids: one segment
            arr = np.zeros(shape, dtype=spec.dtype)
        else:
            high = np.maximum(1, np.asarray(id_ranges.get(spec.name, 10)))
            if high.ndim and (not shape or shape[-1] != high.size):  # per-column bounds of another width
                high = high.min()
            arr = rng.integers(0, high, size=shape).astype(spec.dtype)
        feeds[spec.name] = arr
    return feeds


def torch_reference(module, io: IOSpec):
    """A function feeds -> {output name: array} that runs the torch module in eval mode."""
    torch = _torch()

    def run(feeds):
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in io.inputs]
        with torch.inference_mode():
            out = module(*args)
        out = out if isinstance(out, tuple) else (out,)
        return {s.name: o.detach().float().numpy() if o.dtype == torch.bfloat16 else o.detach().numpy()
                for s, o in zip(io.outputs, out)}

    return run


def probe_outputs(module, io_inputs: tuple[TensorSpec, ...], source: str,
                  feeds: dict[str, np.ndarray] | None = None) -> tuple[TensorSpec, ...]:
    """Run the model once on sample inputs: proves the inputs fit and names/shapes the outputs."""
    torch = _torch()
    feeds = feeds or random_feeds(io_inputs, batch=2, seed=0)
    args = [torch.from_numpy(feeds[s.name]) for s in io_inputs]
    try:
        with torch.inference_mode():
            out = module(*args)
    except Exception as e:  # the model rejected our inputs: that is the user's --input spec
        first = first_line(e, 300)
        spec = " ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in io_inputs)
        raise UsageError(f"{source} rejected the inputs {spec}: {first}; fix --input") from None
    out = out if isinstance(out, tuple) else (out,)
    names = getattr(module, "output_keys", None) or (
        ["output"] if len(out) == 1 else [f"output{i}" for i in range(len(out))])
    specs = []
    for name, o in zip(names, out):
        shape = tuple("batch" if j == 0 else d for j, d in enumerate(o.shape))
        specs.append(TensorSpec(name, str(o.dtype).replace("torch.", ""), shape))
    return tuple(specs)

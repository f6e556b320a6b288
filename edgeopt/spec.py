"""Tensor and I/O specs: names, dtypes and shapes with named dynamic axes.

A shape is a tuple whose items are ints (static) or strings (a named dynamic axis,
such as "batch" or "sequence").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeopt.errors import UsageError

DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
# Example sizes used when we have to make up an input for a named dynamic axis.
EXAMPLE_DIM = {"batch": 2, "sequence": 16}
DEFAULT_EXAMPLE_DIM = 4

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r} for {self.name!r}; use one of {', '.join(DTYPES)}")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def example_shape(self, overrides: dict[str, int] | None = None) -> tuple[int, ...]:
        sizes = {**EXAMPLE_DIM, **(overrides or {})}
        return tuple(d if isinstance(d, int) else sizes.get(d, DEFAULT_EXAMPLE_DIM) for d in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]))


@dataclass(frozen=True)
class IOSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default=())

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


_INPUT_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]*):(?P<shape>[^:]+):(?P<dtype>\w+)$")


def parse_input(text: str) -> TensorSpec:
    """Parse ``NAME:SHAPE:DTYPE`` from ``--input``.

    SHAPE items are separated by ``x`` or ``,``; an item is a size or an axis name.
    The shape a user gives is kept: a number is a fixed size and an axis is dynamic only where
    it is named (``ids:batchxseq:int64``); axis 0 is the dynamic ``batch`` axis unless named
    otherwise. (A CTR ranker's ``cats:1x8:int64`` is 8 categorical fields, not a sequence;
    Hugging Face text models get their dynamic sequence axis from their family, models/hf.py.)
    """
    m = _INPUT_RE.match(text.strip())
    if not m:
        raise UsageError(f"--input {text!r} is not NAME:SHAPE:DTYPE (example: image:1x3x224x224:float32)")
    items = [s for s in re.split(r"[x,]", m["shape"]) if s]
    if not items:
        raise UsageError(f"--input {text!r} has an empty shape")
    dtype = m["dtype"]
    if dtype not in DTYPES:
        raise UsageError(f"--input {text!r}: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    shape: list[Dim] = []
    for i, item in enumerate(items):
        if item.isdigit():
            if int(item) <= 0:
                raise UsageError(f"--input {text!r}: sizes must be positive")
            shape.append(int(item))
        elif re.fullmatch(r"[A-Za-z_]\w*", item):
            shape.append(item)
        else:
            raise UsageError(f"--input {text!r}: {item!r} is neither a size nor an axis name")
    if isinstance(shape[0], int):
        shape[0] = "batch"
    return TensorSpec(m["name"], dtype, tuple(shape))

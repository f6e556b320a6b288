"""Sequence-length buckets: run a dynamic-shape text model as a few static-shape ones.

Why: OpenVINO's CPU plugin runs a dynamic-shape model much slower when consecutive requests differ
in length, as real queries and product titles do. all-MiniLM-L6-v2 INT8 on 100 real Myntra titles
fed one at a time in their own lengths: 1.99 ms per title with dynamic shapes, 1.25 ms with the
export's checked buckets, each title padded up to its bucket (benchmarks/int8_minilm.py, titles
workload; docs/PERFORMANCE.md). A static shape also lets the plugin fuse more (0.83-0.85x at a
fixed 64 tokens).

Padding is exact for models that mask it out (attention mask, masked pooling), which the export
checks on real inputs before it writes the buckets into the IR. Outputs that carry the sequence axis
are cut back to the input's length. Numpy only. The device runtime's OpenVINO engine (openvino.py)
runs the buckets, so export's checks, bench and the device run the same code; edgeopt.backends.buckets
adds what only the build side needs (the default lengths, parsing --shape-buckets).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RT_INFO_PATH = ("edgeopt", "shape_buckets")  # where the export keeps the buckets in the IR's rt_info
MASK_INPUT = "attention_mask"
_RT_PATTERN = re.compile(rf'<{RT_INFO_PATH[0]}>\s*<{RT_INFO_PATH[1]} value="([^"]*)"')


@dataclass(frozen=True)
class ShapeBuckets:
    """Static sequence lengths (ascending), the value each input is padded with (default 0), and
    per length the longest input it does *not* serve (``lower``; default: the length before it).
    A bucket serves lengths in (lower, length]: when a bucket is dropped, the inputs it would have
    served run with dynamic shapes instead of being padded into the next, much larger one."""

    lengths: tuple[int, ...]
    pad: dict[str, int] = field(default_factory=dict)
    lower: tuple[int, ...] | None = None

    def __post_init__(self):
        lengths = tuple(int(n) for n in self.lengths)
        if not lengths or any(n <= 0 for n in lengths) or list(lengths) != sorted(set(lengths)):
            raise ValueError(f"shape bucket lengths must be distinct positive integers, got {self.lengths}")
        lower = (0, *lengths[:-1]) if self.lower is None else tuple(int(n) for n in self.lower)
        if len(lower) != len(lengths) or any(not 0 <= lo < n for lo, n in zip(lower, lengths)):
            raise ValueError(f"shape bucket lower bounds {self.lower} do not fit lengths {lengths}")
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "lower", lower)

    def bucket(self, length: int) -> int | None:
        """The bucket that serves ``length`` tokens; None when none does (dynamic shapes then)."""
        return next((n for lo, n in zip(self.lower, self.lengths) if lo < length <= n), None)

    def keep(self, lengths) -> "ShapeBuckets | None":
        """Only ``lengths`` (a subset), each still serving its own range; None when empty."""
        kept = [(lo, n) for lo, n in zip(self.lower, self.lengths) if n in set(lengths)]
        if not kept:
            return None
        return ShapeBuckets(tuple(n for _, n in kept), dict(self.pad), tuple(lo for lo, _ in kept))

    def pad_feeds(self, feeds: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
        """Every input padded along axis 1 (the sequence) to ``length``."""
        out = {}
        for name, value in feeds.items():
            extra = length - value.shape[1]
            out[name] = value if extra == 0 else np.pad(value, ((0, 0), (0, extra)),
                                                        constant_values=self.pad.get(name, 0))
        return out

    def to_json(self) -> dict:
        return {"lengths": list(self.lengths), "lower": list(self.lower), "pad": dict(self.pad)}

    @classmethod
    def from_json(cls, data: dict) -> "ShapeBuckets":
        lower = data.get("lower")
        return cls(tuple(data["lengths"]), {str(k): int(v) for k, v in (data.get("pad") or {}).items()},
                   None if lower is None else tuple(lower))


def sequence_feeds(feeds: dict[str, np.ndarray]) -> int | None:
    """The common sequence length of 2-D integer feeds with an attention mask, else None (no
    bucketing: another kind of input, or inputs that disagree)."""
    if MASK_INPUT not in feeds or any(v.ndim != 2 or v.dtype.kind not in "iu" for v in feeds.values()):
        return None
    lengths = {v.shape[1] for v in feeds.values()}
    return lengths.pop() if len(lengths) == 1 else None


def model_rt_info_start(xml_text: str) -> int:
    """Where the model-level part of an IR's XML begins: after its layers (each of which may carry
    an rt_info of its own)."""
    return max(xml_text.rfind("</layers>"), 0)


def read_from_ir(xml: str | Path) -> ShapeBuckets | None:
    """The buckets an IR carries in its rt_info, read from the XML text (no model parse: this runs
    on every load, before compile)."""
    try:
        text = Path(xml).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _RT_PATTERN.search(text, model_rt_info_start(text))
    if not match:
        return None
    try:
        return ShapeBuckets.from_json(json.loads(html.unescape(match[1])))
    except (ValueError, KeyError, TypeError):
        return None

"""Sequence-length buckets, the build side: which lengths to check (edgeopt/export/bucket_checks.py).

The buckets themselves (``ShapeBuckets``, reading them from an IR) and running them are the device
runtime's (edgeopt/runtime/buckets.py, edgeopt/runtime/openvino.py, which also say why buckets
exist), so export's checks, bench and the device run one code path; they are re-exported here.
"""

from __future__ import annotations

from edgeopt.runtime.buckets import (
    MASK_INPUT,
    RT_INFO_PATH,
    ShapeBuckets,
    model_rt_info_start,
    read_from_ir,
    sequence_feeds,
)


def default_lengths(max_length: int | None, smallest: int = 8) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to the model's maximum length (itself the last bucket)."""
    top = max_length or 128
    lengths, n = [], smallest
    while n < top:
        lengths.append(n)
        n *= 2
    return (*lengths, top)


def parse_lengths(text: str) -> tuple[int, ...]:
    """'8,16,32' -> (8, 16, 32); ValueError with the reason otherwise."""
    try:
        lengths = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"shape buckets must be comma-separated integers, got {text!r}") from None
    ShapeBuckets(lengths)  # validates
    return lengths


__all__ = ["MASK_INPUT", "RT_INFO_PATH", "ShapeBuckets", "default_lengths", "model_rt_info_start", "parse_lengths",
           "read_from_ir", "sequence_feeds"]

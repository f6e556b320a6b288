"""When a model rejects the ``--input`` shapes: which input and axis, the size given, the size it needs.

"mat1 and mat2 shapes cannot be multiplied (2x262 and 134x128)" does not say that ``cats`` was
given 9 fields where the ranker embeds 8. Each fixed axis (batch aside) is tried alone at other
sizes, smallest first, within a time budget; the first size the model runs with is named.
"""

from __future__ import annotations

import time
from dataclasses import replace

from edgeopt.errors import UsageError

MAX_SIZE = 1024
BUDGET_S = 5.0


def _fmt(spec) -> str:
    return f"{spec.name}:{'x'.join(map(str, spec.shape))}:{spec.dtype}"


def explain_rejection(module, inputs, source: str, id_ranges: dict[str, int]) -> None:
    """Raise a UsageError naming the input, the size given and the size the model runs with, when
    one fixed axis alone is what the model rejects; return quietly otherwise."""
    import torch

    from edgeopt.models.adapter import random_feeds

    start = time.perf_counter()
    for k, spec in enumerate(inputs):
        for axis, given in enumerate(spec.shape):
            if axis == 0 or not isinstance(given, int):
                continue
            for size in range(1, MAX_SIZE + 1):
                if size == given:
                    continue
                if time.perf_counter() - start > BUDGET_S:
                    return
                shape = spec.shape[:axis] + (size,) + spec.shape[axis + 1:]
                trial = list(inputs)
                trial[k] = replace(spec, shape=shape)
                feeds = random_feeds(tuple(trial), batch=2, seed=0, id_ranges=id_ranges)
                try:
                    with torch.inference_mode():
                        module(*[torch.from_numpy(feeds[s.name]) for s in trial])
                except Exception:  # noqa: BLE001 - this size is rejected too
                    continue
                raise UsageError(f"--input {_fmt(spec)} does not fit {source}: axis {axis} of {spec.name} is "
                                 f"{given}, the model needs {size}; fix --input (e.g. {_fmt(trial[k])})")

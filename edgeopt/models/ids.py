"""Integer inputs that index embedding tables: how many rows each may index, read from the model.

Wherever edgeopt makes inputs itself (trace examples, verification samples, the load-time probe)
an id must be one the model can embed: a CTR ranker with a 3-row table for a field fails on id 7.
An input whose tensor (or a view of it, such as ``cats[:, i]`` or ``x["user_id"]``) reaches an
embedding unchanged gets that table's row count (the smallest, when it feeds several); an input
that reaches tables only after arithmetic (a shared table with per-field offsets) keeps the small
default range, capped by the smallest table. The same bounds check user data (``check_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeopt.errors import UsageError

DEFAULT_ID_RANGE = 10  # ids 0..9 where the model does not say more
_PASS_THROUGH = {"select", "slice", "view", "reshape", "unsqueeze", "squeeze", "flatten", "alias", "clone",
                 "_to_copy", "to", "long", "int", "contiguous", "getitem", "expand", "permute", "t", "transpose"}


def _embeddings(module):
    import torch

    return [m for m in module.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]


def _by_hooks(module, names: list[str], args: list) -> dict[str, int]:
    """Run ``module(*args)`` with a pre-hook on every embedding; an index tensor that shares storage
    with an input is that input's."""
    import torch

    storage = {a.untyped_storage().data_ptr(): n for n, a in zip(names, args)
               if isinstance(a, torch.Tensor) and not a.is_floating_point() and a.numel()}
    limits: dict[str, int] = {}

    def hook(mod, inp):
        idx = inp[0] if inp else None
        if isinstance(idx, torch.Tensor) and idx.numel():
            name = storage.get(idx.untyped_storage().data_ptr())
            if name is not None:
                limits[name] = min(limits.get(name, mod.num_embeddings), mod.num_embeddings)

    handles = [m.register_forward_pre_hook(hook) for m in _embeddings(module)]
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for h in handles:
            h.remove()
    return limits


def _by_graph(gm, names: list[str]) -> tuple[dict[str, int], list[int]]:
    """An fx graph (a torch.export program's module): aten.embedding nodes, their weight's rows, and
    the placeholder their indices come from through view-like ops."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    position = {n: i for i, n in enumerate(placeholders)}
    limits: dict[str, int] = {}
    rows: list[int] = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or "embedding" not in str(node.target) or len(node.args) < 2:
            continue
        weight, idx = node.args[0], node.args[1]
        val = getattr(weight, "meta", {}).get("val")
        if val is None and getattr(weight, "op", None) == "get_attr":
            val = gm.get_parameter(weight.target) if "." in weight.target or hasattr(gm, weight.target) else None
        if val is None or not len(val.shape):
            continue
        n_rows = int(val.shape[0])
        rows.append(n_rows)
        for _ in range(16):
            if getattr(idx, "op", None) != "call_function":
                break
            op = str(getattr(idx.target, "__name__", idx.target)).split(".")[0].split("::")[-1]
            if op not in _PASS_THROUGH or not idx.args:
                break
            idx = idx.args[0]
        if getattr(idx, "op", None) == "placeholder" and position.get(idx, len(names)) < len(names):
            name = names[position[idx]]
            limits[name] = min(limits.get(name, n_rows), n_rows)
    return limits, rows


@dataclass(frozen=True)
class IdLimits:
    """``exact``: inputs that reach a table unchanged -> its rows (what user data is checked
    against); ``ranges``: every integer input -> the ids edgeopt draws for it (exclusive bound)."""
    exact: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, int] = field(default_factory=dict)


def id_limits(module, inputs, feeds: dict[str, np.ndarray]) -> IdLimits:
    """Read from the model: empty for a model without embedding tables, or one edgeopt cannot look
    into (TorchScript), whose ids stay in the default range."""
    import torch

    names = [s.name for s in inputs]
    ints = [s.name for s in inputs if s.dtype.startswith(("int", "uint"))]
    if not ints or module is None:
        return IdLimits()
    try:
        if isinstance(module, torch.fx.GraphModule):
            limits, rows = _by_graph(module, names)
        else:
            rows = [m.num_embeddings for m in _embeddings(module)]
            if not rows:
                return IdLimits()
            limits = _by_hooks(module, names, [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    except Exception:  # noqa: BLE001 - TorchScript and exotic modules: ids stay in the default range
        return IdLimits()
    if not rows:
        return IdLimits()
    fallback = min(DEFAULT_ID_RANGE, min(rows))
    return IdLimits(limits, {n: limits.get(n, fallback) for n in ints})


def check_ids(samples, limits: dict[str, int], what: str) -> None:
    """One line naming the input and the table size when ``samples`` hold an id the model cannot
    embed (negative, or past the table)."""
    for name, rows in limits.items():
        values = [s[name] for s in samples if name in s and s[name].size]
        if not values:
            continue
        hi = max(int(v.max()) for v in values)
        lo = min(int(v.min()) for v in values)
        if hi >= rows or lo < 0:
            bad = hi if hi >= rows else lo
            raise UsageError(f"{what}: input {name} holds id {bad}, but the embedding table it indexes has {rows} "
                             f"rows (ids 0..{rows - 1}); map unseen ids into the table (or grow it with "
                             "edgeopt update) before using this data")

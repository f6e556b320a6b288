"""Integer inputs that index embedding tables: how many rows each may index, read from the model.

Wherever edgeopt makes inputs itself (trace examples, verification samples, the load-time probe)
an id must be one the model can embed: a CTR ranker with a 3-row table for a field fails on id 7.
An input whose tensor (or a view of it, such as ``cats[:, i]`` or ``x["user_id"]``) reaches an
embedding unchanged gets that table's row count (the smallest, when it feeds several); an input
that reaches tables only after arithmetic (a shared table with per-field offsets) keeps the small
default range, capped by the smallest table, unless it is a 2-D input read column by column
(``_column_tables``: one table per field, or per-field offsets into one). The same bounds check
user data (``check_ids``).
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


MAX_FIELDS = 64  # a 2-D integer input this wide or narrower is read column by column


def _column_tables(module, names: list[str], args: list) -> dict[str, tuple[int | None, ...]]:
    """Per column of each 2-D integer input (``cats`` of N fields): how many ids that column may
    take, or None where the model does not say. One forward pass per such input on a batch of
    N + 1 rows: row 0 all zeros, row j + 1 with column j set to 1. An index that moves by exactly 1
    where column j moved reaches its table as ``id + offset`` (offset 0: one table per field or one
    shared table; else per-field offsets into one table), and column j owns the rows from its
    offset up to the next field's offset in that table (or the table's end)."""
    import torch

    out: dict[str, tuple[int | None, ...]] = {}
    for k, (name, a) in enumerate(zip(names, args)):
        if not isinstance(a, torch.Tensor) or a.is_floating_point() or a.dim() != 2 or not a.shape[1] <= MAX_FIELDS:
            continue
        n = a.shape[1]
        probe = torch.zeros((n + 1, n), dtype=a.dtype)
        probe[1:] = torch.eye(n, dtype=a.dtype)
        batch = [probe if i == k else x[:1].expand(n + 1, *x.shape[1:]).clone()
                 if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] else x for i, x in enumerate(args)]
        calls = []

        def hook(mod, inp, _calls=calls):
            if inp and isinstance(inp[0], torch.Tensor):
                _calls.append((id(mod), mod.num_embeddings, inp[0].detach().clone()))

        handles = [m.register_forward_pre_hook(hook) for m in _embeddings(module)]
        try:
            with torch.inference_mode():
                module(*batch)
        except Exception:  # noqa: BLE001 - this batch is not one the model takes: per input, as before
            continue
        finally:
            for h in handles:
                h.remove()
        uses: dict[int, list] = {}
        offsets: dict[int, set] = {}
        unknown: set[int] = set()
        for table, rows, idx in calls:
            if idx.dim() == 0 or idx.shape[0] != n + 1:
                continue
            for j in range(n):
                moved = idx[j + 1] - idx[0]
                hit = moved != 0
                if not bool(hit.any()):
                    continue
                if not bool((moved[hit] == 1).all()):  # hashed, scaled: not an id plus an offset
                    unknown.add(j)
                    continue
                for o in idx[0][hit].unique().tolist():
                    uses.setdefault(j, []).append((table, int(o), rows))
                    offsets.setdefault(table, set()).add(int(o))
        out[name] = tuple(None if j in unknown or j not in uses else
                          min(min((p for p in offsets[t] if p > o), default=rows) - o for t, o, rows in uses[j])
                          for j in range(n))
    return out


def _per_column(bounds: tuple[int, ...]) -> int | tuple[int, ...]:
    """One number when every column has the same bound."""
    return bounds[0] if len(set(bounds)) == 1 else bounds


def smallest(bound: int | tuple[int, ...]) -> int:
    return min(bound) if isinstance(bound, (tuple, list)) else bound


@dataclass(frozen=True)
class IdLimits:
    """``exact``: inputs that reach a table unchanged (or plus a per-field offset) -> its rows (what
    user data is checked against); ``ranges``: every integer input -> the ids edgeopt draws for it
    (exclusive bound). A bound is one number, or one per column of a 2-D input whose columns
    reach tables of different sizes (``cats`` feeding one table per field)."""
    exact: dict[str, int | tuple[int, ...]] = field(default_factory=dict)
    ranges: dict[str, int | tuple[int, ...]] = field(default_factory=dict)


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
            (limits, rows), columns = _by_graph(module, names), {}
        else:
            rows = [m.num_embeddings for m in _embeddings(module)]
            if not rows:
                return IdLimits()
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
            limits = _by_hooks(module, names, args)
            columns = _column_tables(module, names, args)
    except Exception:  # noqa: BLE001 - TorchScript and exotic modules: ids stay in the default range
        return IdLimits()
    if not rows:
        return IdLimits()
    fallback = min(DEFAULT_ID_RANGE, min(rows))
    exact, ranges = dict(limits), {n: limits.get(n, fallback) for n in ints}
    for name, bounds in columns.items():
        if name not in ranges or all(b is None for b in bounds):
            continue
        ranges[name] = _per_column(tuple(b if b is not None else ranges[name] for b in bounds))
        if all(b is not None for b in bounds):
            exact[name] = _per_column(bounds)
    return IdLimits(exact, ranges)


def check_ids(samples, limits: dict[str, int], what: str) -> None:
    """One line naming the input and the table size when ``samples`` hold an id the model cannot
    embed (negative, or past the table)."""
    for name, bound in limits.items():
        values = [s[name] for s in samples if name in s and s[name].size]
        if not values:
            continue
        per_column = isinstance(bound, (tuple, list))
        if per_column and any(v.ndim < 1 or v.shape[-1] != len(bound) for v in values):
            bound, per_column = min(bound), False
        cols = list(enumerate(bound)) if per_column else [(None, bound)]
        for col, rows in cols:
            picked = [v[..., col] if col is not None else v for v in values]
            hi = max(int(v.max()) for v in picked)
            lo = min(int(v.min()) for v in picked)
            if hi >= rows or lo < 0:
                bad = hi if hi >= rows else lo
                where = f"input {name}" + (f" (column {col})" if col is not None else "")
                raise UsageError(f"{what}: {where} holds id {bad}, but the embedding table it indexes has {rows} "
                                 f"rows (ids 0..{rows - 1}); map unseen ids into the table (or grow it with "
                                 "edgeopt update) before using this data")

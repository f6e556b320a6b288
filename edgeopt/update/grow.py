"""New ids: embedding tables (and the output layer over the same ids) grow to fit ids never seen.

The id space is read from the data: an integer input whose ids reach N or beyond a table of N rows
grows that table to (largest id + 1) rows; a classifier's labels beyond its output columns grow the
output layer likewise. When the output layer has as many columns as a table has rows (a next-item
model scoring the same items it reads), both grow to the same size, so the next update finds the
same convention. Which table an input feeds is found by running the model once with hooks (eager
modules) or by reading the graph (torch.export programs). New rows start at the mean of the old
ones plus noise at their spread (embeddings) or at the mean row (output layer: new items start as
an average item, not a favourite); the update then trains them while its method protects the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.errors import UsageError


@dataclass
class Table:
    path: str  # parameter path, e.g. "inner.items.weight"
    rows: int
    kind: str  # embedding | output
    input: str | None = None


def _get(module, path: str):
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(module, path: str, value) -> None:
    *parents, last = path.split(".")
    owner = module
    for part in parents:
        owner = getattr(owner, part)
    setattr(owner, last, value)


def _param_paths(module) -> dict[int, str]:
    return {id(p): name for name, p in module.named_parameters()}


def find_tables(module, names: list[str], example: list, width) -> list[Table]:
    """Embedding tables per integer input, and the output layer of ``width`` columns."""
    import torch

    paths = _param_paths(module)
    tables: list[Table] = []
    graph = getattr(module, "graph", None) or getattr(getattr(module, "inner", None), "graph", None)
    if graph is not None:  # a torch.export program: read the graph
        owner = module if getattr(module, "graph", None) is not None else module.inner
        prefix = "" if owner is module else "inner."
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            target = str(node.target)
            if target.startswith("aten.embedding") and node.args[0].op == "get_attr":
                src = node.args[1]
                while src.op != "placeholder" and src.args and hasattr(src.args[0], "op"):
                    src = src.args[0]
                if src in placeholders and placeholders.index(src) < len(names):
                    weight = _get(owner, node.args[0].target)
                    tables.append(Table(prefix + node.args[0].target, int(weight.shape[0]), "embedding",
                                        names[placeholders.index(src)]))
            elif target.startswith("aten.linear") and len(node.args) > 1 and node.args[1].op == "get_attr":
                weight = _get(owner, node.args[1].target)
                if isinstance(width, int) and weight.shape[0] == width:
                    tables = [t for t in tables if t.kind != "output"]
                    tables.append(Table(prefix + node.args[1].target, width, "output"))
        return tables
    seen: list[tuple[str, object]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, a, _s=seen: _s.append((mod, a[0])))
             for m in module.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        with torch.inference_mode():
            module(*example)
    finally:
        for h in hooks:
            h.remove()
    for mod, arg in seen:
        for name, x in zip(names, example):
            if arg is x or (isinstance(arg, torch.Tensor) and arg.shape == x.shape and arg.data_ptr() == x.data_ptr()):
                tables.append(Table(paths[id(mod.weight)], mod.num_embeddings, "embedding", name))
    heads = [m for m in module.modules() if isinstance(m, torch.nn.Linear) and m.out_features == width]
    if heads:
        tables.append(Table(paths[id(heads[-1].weight)], width, "output"))
    return tables


def _grown(old, rows: int, kind: str, gen):
    import torch

    extra = rows - old.shape[0]
    base = old.detach()
    if kind == "embedding":
        new = base.mean(0) + torch.randn((extra, *base.shape[1:]), generator=gen) * base.std(0)
    else:
        new = base.mean(0).expand(extra, *base.shape[1:]).clone()
    return torch.nn.Parameter(torch.cat([base, new.to(base.dtype)]), requires_grad=old.requires_grad)


def grow(module, tables: list[Table], id_max: dict[str, int], label_max: int | None, seed: int = 0) -> dict:
    """Grow the tables in place; returns {input or 'output': {"from", "to", "parameter"}} of what grew."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    target: dict[str, int] = {}
    for t in tables:
        if t.kind == "embedding" and id_max.get(t.input, -1) >= t.rows:
            target[t.path] = id_max[t.input] + 1
    out = next((t for t in tables if t.kind == "output"), None)
    if out is not None:
        want = label_max + 1 if label_max is not None and label_max >= out.rows else out.rows
        shared = [t for t in tables if t.kind == "embedding" and t.rows == out.rows]
        if shared:  # output and table index the same ids: one size for both
            want = max([want] + [target.get(t.path, t.rows) for t in shared])
            for t in shared:
                if want > t.rows:
                    target[t.path] = want
        if want > out.rows:
            target[out.path] = want
    grew = {}
    for t in tables:
        rows = target.get(t.path)
        if rows is None or rows <= t.rows:
            continue
        owner_path, _, leaf = t.path.rpartition(".")
        owner = _get(module, owner_path) if owner_path else module
        _set(module, t.path, _grown(_get(module, t.path), rows, t.kind, gen))
        if t.kind == "output":
            bias = getattr(owner, "bias", None) if leaf == "weight" else None
            if isinstance(bias, torch.nn.Parameter) and bias.shape[0] == t.rows:
                owner.bias = _grown(bias, rows, "output", gen)
            if hasattr(owner, "out_features"):
                owner.out_features = rows
        elif hasattr(owner, "num_embeddings"):
            owner.num_embeddings = rows
        grew[t.input if t.kind == "embedding" else "output"] = {"from": t.rows, "to": rows, "parameter": t.path}
    if out is not None and label_max is not None and label_max >= target.get(out.path, out.rows):
        raise UsageError(f"labels reach {label_max}, beyond the output layer's {out.rows} columns, and it "
                         "could not grow; check the labels")
    return grew


def check_fits(tables: list[Table], label_max: int | None, width, task: str, model_name: str) -> None:
    """Labels that no output layer can grow for are the data not matching the model."""
    if task == "classify" and label_max is not None and isinstance(width, int) and label_max >= width:
        if not any(t.kind == "output" for t in tables):
            raise UsageError(f"labels reach {label_max} but {model_name} has {width} output columns and no "
                             "output layer edgeopt can grow (an nn.Linear / linear op of that width)")


def id_ranges(datasets, int_inputs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ds in datasets:
        for s in ds.samples:
            for n in int_inputs:
                out[n] = max(out.get(n, -1), int(s[n].max()))
                lo = int(s[n].min())
                if lo < 0:
                    raise UsageError(f"{ds.source}: input {n!r} holds a negative id ({lo}); ids must be >= 0")
    return out

"""PyTorch checkpoints: torch.export .pt2, TorchScript, state dicts (+ --arch), whole pickles.

Safe by default: state dicts load with ``weights_only=True``; a file that needs real unpickling
(a whole pickled module, custom classes, or a malicious payload) is refused unless the user
passes ``--trust-pickle``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from edgeopt.errors import UsageError, first_line
from edgeopt.models.adapter import make_adapter, probe_outputs, random_feeds, torch_reference
from edgeopt.models.arch import build_from_arch
from edgeopt.models.base import LoadedModel
from edgeopt.spec import IOSpec, TensorSpec

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def zip_kind(path: Path) -> str | None:
    """'pt2', 'torchscript', 'torch-zip' or None (not a zip: legacy pickle or garbage)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        names = zipfile.ZipFile(path).namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("/archive_format") or "/models/" in n for n in names):
        return "pt2"
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    return "torch-zip"


def _need_inputs(path: Path, what: str, inputs) -> tuple[TensorSpec, ...]:
    if not inputs:
        raise UsageError(f"{path.name}: {what} does not record input shapes; "
                         "pass --input NAME:SHAPE:DTYPE (example: image:1x3x224x224:float32)")
    return tuple(inputs)


def _probe(adapter, inputs, name, ranges, float_ids):
    """probe_outputs on every sample edgeopt will feed (a lucky draw must not hide a rejection)."""
    feeds = [random_feeds(inputs, batch=b, seed=seed, id_ranges=ranges, float_ids=float_ids)
             for b, seed in ((2, 0), (1, 1), (3, 3))]
    outputs = [probe_outputs(adapter, inputs, name, feeds=f) for f in feeds]
    return outputs[0]


def _check_reads(reads: set, inputs, name) -> None:
    """A dict-input model given a name its forward never reads: that --input is a mistake."""
    unread = [s.name for s in inputs if s.name not in reads]
    if unread:
        raise UsageError(f"--input {unread[0]}: {name} takes one dict of inputs and its forward never reads "
                         f"x[{unread[0]!r}] (it reads {', '.join(sorted(reads)) or 'none of them'}); drop that "
                         "--input or fix its name")


def user_rows(rows, inputs) -> dict | None:
    """The first rows of the user's labelled data (an .npz keyed by input name), cast to each
    input's dtype, when it holds every input at the shape ``--input`` gives; else None."""
    import numpy as np

    if rows is None or Path(rows).suffix != ".npz" or not Path(rows).is_file():
        return None
    import zipfile

    try:  # a file that cannot be read is the data loader's to report, with its own message
        with np.load(rows, allow_pickle=False) as z:
            if not all(s.name in z.files for s in inputs):
                return None
            arrays = {s.name: z[s.name][:3] for s in inputs}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    for s in inputs:
        a = arrays[s.name]
        if not len(a) or a.ndim != len(s.shape) or any(isinstance(d, int) and a.shape[i] != d
                                                       for i, d in enumerate(s.shape) if i):
            return None
        if a.dtype.kind not in "biuf":  # complex, strings, objects: not rows this model reads
            return None
        arrays[s.name] = np.ascontiguousarray(a.astype("float32" if s.dtype == "bfloat16" else s.dtype))
    return arrays


def _finish(path, family, module, inputs, style=None, rows=None, **extra) -> LoadedModel:
    """``rows``: the user's labelled data (user_rows): the input check runs on its first rows, and
    when edgeopt's made-up samples are what the model rejects, the model's samples are those rows."""
    import torch

    from edgeopt.models.ids import DEFAULT_ID_RANGE, id_limits, smallest

    adapter = make_adapter(module, [s.name for s in inputs], style=style)
    zeros = random_feeds(inputs, batch=2, seed=0, id_ranges={s.name: 1 for s in inputs})
    limits = id_limits(module if isinstance(module, torch.fx.GraphModule) else adapter, inputs, zeros)
    float_ids = None
    real = user_rows(rows, inputs)
    # the keys a dict-input forward reads (a torch.export program's keys are its own: not checked)
    track = adapter.style == "dict" and not isinstance(module, torch.fx.GraphModule)
    reads: set = set()
    adapter.reads = reads if track else None
    try:
        if real is not None:
            try:
                outputs = probe_outputs(adapter, inputs, path.name, feeds=real)
            except UsageError:  # the data is at fault, or --input: the data check or the made-up probe says which
                real = None
        try:
            made_up = _probe(adapter, inputs, path.name, limits.ranges, None)
            outputs = made_up if real is None else outputs
            real = None  # the made-up samples are taken too: they cover the id ranges
        except UsageError as e:  # ids kept in a float tensor reject normal floats: try whole numbers before failing
            if "no --input names" in str(e):  # a dict-input model missing a key: no size will fix that
                raise
            if real is None:
                float_ids = min([DEFAULT_ID_RANGE, *map(smallest, limits.ranges.values())])
                try:
                    outputs = _probe(adapter, inputs, path.name, limits.ranges, float_ids)
                except UsageError:
                    float_ids = None
                if float_ids is None:
                    from edgeopt.models.shapes import explain_rejection

                    explain_rejection(adapter, inputs, path.name, limits.ranges)
                    raise
    finally:
        adapter.reads = None
    if track:
        _check_reads(reads, inputs, path.name)
    io = IOSpec(inputs, outputs)

    def samples():
        if real is not None:  # the model takes the user's rows and rejects made-up ones
            return [{n: a[:b] for n, a in real.items()} for b in (1, 3)]
        return [random_feeds(inputs, batch=b, seed=b, id_ranges=limits.ranges, float_ids=float_ids) for b in (1, 3)]

    model = LoadedModel(name=path.stem, source=path, family=family, io=io, module=adapter,
                        reference=torch_reference(adapter, io), sample_feeds=samples, **extra)
    model.metadata["id_limits"] = limits
    return model


def _max_batch(ep, user_inputs) -> int | None:
    """The upper bound the program puts on the batch axis (axis 0 of its first input), when finite."""
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            dim = val.shape[0] if val is not None and len(val.shape) else None
            expr = getattr(getattr(dim, "node", None), "expr", None)
            bounds = ep.range_constraints.get(expr) if expr is not None else None
            upper = getattr(bounds, "upper", None)
            try:
                return int(upper) if upper is not None and int(upper) < 2 ** 62 else None
            except (TypeError, ValueError, OverflowError):  # unbounded (sympy oo)
                return None
    return None


def _dict_keys(ep) -> list[str] | None:
    """The keys when the program was exported from ``forward(x)`` with one dict of tensors."""
    try:
        args_spec, kwargs_spec = ep.call_spec.in_spec.children()
        if args_spec.num_children != 1 or kwargs_spec.num_children:
            return None
        spec = args_spec.child(0)
    except Exception:  # noqa: BLE001 - older torch.export layouts: treated as positional inputs
        return None
    if spec.type is not dict or any(c.num_children for c in spec.children()):
        return None
    return [str(k) for k in spec.context]


def load_pt2(path: Path, inputs, rows=None) -> LoadedModel:
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise UsageError(f"{path.name} is not a readable torch.export archive ({type(e).__name__}); "
                         "re-save it with torch.export.save") from None
    found = []
    user_inputs = list(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            shape = tuple(int(d) if isinstance(d, int) or str(d).isdigit() else
                          ("batch" if i == 0 else ("sequence" if i == 1 and val.dtype in (torch.int64, torch.int32)
                                                   else f"{node.name}_dim{i}"))
                          for i, d in enumerate(val.shape))
            found.append(TensorSpec(node.name, str(val.dtype).replace("torch.", ""), shape))
    keys = _dict_keys(ep)
    if keys is not None and len(keys) == len(found):  # forward(x: dict): its inputs are the dict's keys
        found = [TensorSpec(k, f.dtype, f.shape) for k, f in zip(keys, found)]
    if inputs:
        if len(inputs) != len(found) or any(len(a.shape) != len(b.shape) or a.dtype != b.dtype
                                            for a, b in zip(inputs, found)):
            want = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in found)
            raise UsageError(f"--input contradicts {path.name}, which takes {want}; fix or drop --input")
        found = [TensorSpec(a.name, b.dtype, b.shape) for a, b in zip(inputs, found)]
    max_batch = _max_batch(ep, user_inputs)
    module = ep.module()
    model = _finish(path, "pt2", module, tuple(found), style="args" if keys is None else "dict", rows=rows)
    model.metadata["exported_program"] = ep
    if max_batch is not None:
        model.metadata["max_batch"] = max_batch
    return model


def load_torchscript(path: Path, inputs, rows=None) -> LoadedModel:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise UsageError(f"{path.name} is not a readable TorchScript file ({first_line(e, 120)})") from None
    model = _finish(path, "torchscript", module, _need_inputs(path, "TorchScript", inputs), rows=rows)
    model.metadata["export_module"] = module  # the TorchScript exporter takes script modules as they are
    return model


def _unwrap_state_dict(obj) -> dict:
    import torch

    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError("checkpoint is not a state dict of tensors; save model.state_dict(), "
                         "or a whole module with --trust-pickle")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first object torch.save's pre-zip format pickles


def not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot be a torch.save checkpoint (None when it may be one): torch.save writes a
    zip archive, or (before torch 1.6) a pickle that starts with torch's magic number."""
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):  # a zip without its central directory: cut off mid-write
        return f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?); save it again"
    if head[:1] != b"\x80":
        kind = ("a NumPy .npy array" if head.startswith(b"\x93NUMPY") else
                "an ONNX or other protobuf file" if head[:1] == b"\x08" else
                "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "not a known format")
        return f"{path.name} is not a PyTorch checkpoint ({kind}); save weights with torch.save(model.state_dict(), path)"
    if head[2:4] == b"\x8a\x0a" and int.from_bytes(head[4:14], "little") == _LEGACY_MAGIC:
        return None
    return (f"{path.name} is a plain Python pickle, not a PyTorch checkpoint; save weights with "
            "torch.save(model.state_dict(), path)")


def read_state_dict(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UsageError(f"{path.name} is not a readable safetensors file ({e}); re-save it") from None
    reason = not_a_torch_file(path)
    if reason:
        raise UsageError(reason)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise UsageError(f"{path.name} holds pickled Python objects, which could run code; edgeopt does not "
                             "unpickle them. Save model.state_dict() and pass --arch, or pass --trust-pickle "
                             "if you trust the file") from None
        raise UsageError(f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                         f"{first_line(e, 160)}") from None
    try:
        return _unwrap_state_dict(obj)
    except UsageError as e:
        raise UsageError(f"{path.name}: {e}") from None


def fit_state_dict(model, state: dict, arch: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})")
        raise UsageError(f"state dict does not fit --arch {arch}: {'; '.join(parts)}; "
                         "check --arch and --arch-kwargs")
    model.load_state_dict(state)


def load_state_dict_model(path: Path, arch: str | None, arch_kwargs: dict, inputs, rows=None) -> LoadedModel:
    state = read_state_dict(path)
    if not arch:
        raise UsageError(f"{path.name} is a state dict (weights only); pass --arch MODULE:FACTORY to build the model")
    model = build_from_arch(arch, arch_kwargs).eval()
    fit_state_dict(model, state, arch)
    return _finish(path, "state_dict", model, _need_inputs(path, "a state dict", inputs), rows=rows)


def load_pickled_module(path: Path, inputs, rows=None) -> LoadedModel:
    import torch

    try:
        module = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise UsageError(f"{path.name} could not be unpickled: {first_line(e, 160)}") from None
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"{path.name} unpickled to {type(module).__name__}, not a torch.nn.Module")
    return _finish(path, "pickle", module.eval(), _need_inputs(path, "a pickled module", inputs), rows=rows)

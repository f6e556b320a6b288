"""Structured pruning of plain PyTorch modules (CNNs, MLPs, rankers) with torch-pruning's DepGraph.

DepGraph finds every layer coupled to a channel (a conv's output, its batch norm, the next conv's
input, both sides of a residual add) and removes whole channels across that group, so the pruned
module is a smaller dense module that any runtime runs faster. Channels are ranked globally (one
threshold over all layers), so sensitive layers keep more of their width than robust ones; no
layer loses more than ``max_layer_ratio`` of its channels. Kept widths are rounded to the nearest
multiple of ``round_to``. The layers that produce the model's outputs are never pruned.
"""

from __future__ import annotations

from typing import Callable, Iterable

from edgeopt.errors import UsageError, first_line


def _roots():
    import torch

    return (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def round_kept(n_pruned: int, channels: int, round_to: int) -> int:
    """How many of ``channels`` to prune when the kept width must be a multiple of ``round_to``: the
    kept width goes to the *nearest* multiple (ties keep more), never below one block.

    torch-pruning rounds the kept width down, so in a global prune any layer that loses a single
    channel of 32 with round_to=16 loses half of them; measured on the product-photo CNN, a 10 %
    prune then left top-1 at 0.13 (from 0.77) where rounding to nearest keeps it near the unrounded
    prune's 0.75.
    """
    kept = channels - n_pruned
    kept = max(round_to, (kept + round_to // 2) // round_to * round_to)
    return max(channels - min(kept, channels), 0)


def _run_hooked(module, args: tuple, hook):
    """One no-grad forward pass on ``args`` with ``hook(layer, inputs, output)`` on every conv /
    linear layer; returns the module's output."""
    import torch

    hooks = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _roots())]
    try:
        with torch.no_grad():
            return module(*args)
    finally:
        for h in hooks:
            h.remove()


def output_layers(module, args: tuple) -> list:
    """The conv / linear layers whose result is (one of) the module's outputs: the last such layer
    called whose output width equals an output's width (a classifier head, an embedding projection)."""
    import torch

    calls = []
    out = _run_hooked(module, args, lambda m, i, o: calls.append((m, o)))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    found = []
    for y in outs:
        if not isinstance(y, torch.Tensor) or y.ndim < 1:
            continue
        width = y.shape[1] if y.ndim == 4 else y.shape[-1]
        for m, o in reversed(calls):
            w = getattr(m, "out_features", None) or getattr(m, "out_channels", None)
            if w == width:
                if m not in found:
                    found.append(m)
                break
    return found


def layer_widths(module) -> dict[str, int]:
    """Output width of every conv / linear layer, by qualified name."""
    return {name: int(getattr(m, "out_features", None) or m.out_channels)
            for name, m in module.named_modules() if isinstance(m, _roots())}


def _scalar(out):
    import torch

    outs = out if isinstance(out, (tuple, list)) else (out,)
    return sum(o.float().sum() for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point())


def channel_macs(module, args: tuple) -> dict:
    """{layer: (MACs per output channel, MACs per input channel)} of every conv / linear layer in one
    forward pass on ``args``: what removing one of its channels saves there."""
    import torch

    costs = {}

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Linear):
            positions = out.numel() // max(out.shape[-1], 1)  # batch x tokens
            costs[m] = (m.in_features * positions, m.out_features * positions)
        else:
            per_position = m.weight[0].numel()  # in_channels / groups x kernel
            positions = out[0, 0].numel() * out.shape[0]
            costs[m] = (per_position * positions, m.out_channels // m.groups * m.weight[0, 0].numel() * positions)

    _run_hooked(module, args, hook)
    return costs


class PerMac:
    """An importance divided by ``power`` of the MACs each channel of the group costs (its own
    output channel plus the input channel it feeds): ranked globally, channels of expensive layers
    (early, high-resolution convolutions) go first at equal importance, so the same share of
    channels removes more arithmetic."""

    def __init__(self, base, costs: dict, graph, power: float = 1.0):
        self.base, self.costs, self.graph, self.power = base, costs, graph, power

    def __call__(self, group):
        imp = self.base(group)
        if imp is None:
            return None
        cost = 0
        for dep, _ in group:
            c = self.costs.get(dep.target.module)
            if c is not None:
                cost += c[0] if self.graph.is_out_channel_pruning_fn(dep.handler) else c[1]
        return imp / max(cost, 1) ** self.power


def prune_channels(module, args: tuple, *, ratio: float, round_to: int | None,
                   gradients: Callable[[], None] | None = None, max_layer_ratio: float | None = None,
                   name: str = "the model", auto_round: bool = False, mac_weight: float = 0.0) -> int | None:
    """Remove ``ratio`` of the prunable channels of ``module`` in place.

    ``gradients`` (when there is data) runs forward / backward passes on it, so channels are ranked
    by first-order Taylor importance (|weight x gradient|: what the loss would lose); without it
    they are ranked by L2 magnitude. With ``auto_round`` (a default ``round_to``) the block is
    halved until the narrowest layer can keep one at this ratio. With ``mac_weight`` the importance is
    divided by what each channel costs to the power ``mac_weight`` (:class:`PerMac`). Returns the round_to used.
    """
    import torch
    import torch_pruning as tp

    ignored = output_layers(module, args)
    # Taylor scores estimate the loss each channel's removal costs, a scale shared by all layers, so
    # they are ranked globally as they are (dividing by each layer's mean, torch-pruning's default,
    # evens the layers out: on the product-photo CNN a 10 % prune kept top-1 0.71 of 0.77 unnormalized,
    # 0.31 normalized); weight magnitudes differ in scale from layer to layer and keep the mean.
    importance = (tp.importance.GroupTaylorImportance(normalizer=None) if gradients
                  else tp.importance.GroupMagnitudeImportance(p=2))
    try:
        pruner = tp.pruner.MetaPruner(module, example_inputs=args, importance=importance, global_pruning=True,
                                      pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to,
                                      output_transform=_scalar)
    except Exception as e:  # the tracer's own failure: say which model and why
        raise UsageError(f"torch-pruning cannot trace {name}: {first_line(e)}; "
                         "prune it without --structured") from None
    if mac_weight:
        pruner.importance = PerMac(importance, channel_macs(module, args), pruner.DG, mac_weight)
    widths = {}
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
        layer = group[0][0].target.module
        widths[pruner.DG._module2name.get(layer, type(layer).__name__)] = pruner.DG.get_out_channels(layer)
    if not widths:
        raise UsageError(f"{name} has no prunable channels (no conv / linear layer besides its output layers); "
                         "drop --structured")
    # no layer loses more than a third of the average kept share below it, nor falls under round_to
    narrow = min(widths, key=widths.get)
    floor_cap = 1 - (round_to or 1) / widths[narrow]
    while auto_round and round_to and round_to > 1 and ratio > floor_cap:  # a default block the ratio cannot keep
        round_to //= 2
        floor_cap = 1 - round_to / widths[narrow]
    pruner.round_to = round_to
    pruner._round_to = round_kept  # MetaPruner calls self._round_to(n_pruned, channels, round_to)
    cap = max_layer_ratio if max_layer_ratio is not None else min(0.9, 1 - (1 - ratio) / 3, floor_cap)
    if ratio > cap + 1e-9:
        raise UsageError(f"ratio {ratio} would remove whole layers: the narrowest, {narrow} ({widths[narrow]} "
                         f"channels{f', kept in multiples of --round-to {round_to}' if round_to else ''}), can lose at "
                         f"most {max(cap, 0):.2f} of them; choose a ratio <= {max(cap, 0):.2f}"
                         f"{' or a smaller --round-to' if round_to and round_to > 1 else ''}")
    pruner.max_pruning_ratio = cap
    module.zero_grad(set_to_none=True)
    if gradients is not None:
        with torch.enable_grad():
            gradients()
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        layer = dep.target.module
        width = pruner.DG.get_out_channels(layer) if pruner.DG.is_out_channel_pruning_fn(dep.handler) \
            else pruner.DG.get_in_channels(layer)
        if width is not None and len(idxs) >= width:
            layer_name = pruner.DG._module2name.get(layer, type(layer).__name__)
            raise UsageError(f"ratio {ratio} would remove all {width} channels of layer {layer_name}"
                             + (f" (--round-to {round_to} keeps multiples of {round_to})" if round_to else "")
                             + "; choose a lower ratio or --round-to")
        group.prune()
    module.zero_grad(set_to_none=True)
    return round_to


def check_forward(module, args: tuple, name: str) -> None:
    """Run the pruned module once; a failure names the layer it happened in (or after), since the
    usual cause is code that hard-codes a width torch-pruning changed (a view(-1, 256), a raw
    parameter used outside a layer)."""
    import torch

    stack, done = [], []  # modules entered and not left; modules left, in order
    names = {m: (n.removeprefix("inner.") if n != "inner" else type(m).__name__)
             for n, m in module.named_modules() if n}
    hooks = []

    def enter(m, i):
        stack.append((m, len(done)))

    def leave(m, i, o):  # returns None: the output stays as it is
        if stack:
            stack.pop()
        done.append(m)

    for m in names:
        hooks.append(m.register_forward_pre_hook(enter))
        hooks.append(m.register_forward_hook(leave))
    try:
        with torch.no_grad():
            module(*args)
    except Exception as e:
        inner, since = stack[-1] if stack else (None, 0)
        if len(done) > since:  # the failing code runs after a child layer finished: name both
            where = f"after layer {names[done[-1]]}" + (f" (in {names[inner]}'s forward)" if inner is not None else "")
        elif inner is not None:
            where = f"in layer {names[inner]}"
        else:
            where = "before its first layer"
        raise UsageError(f"torch-pruning cannot prune {name}: after removing channels the model fails {where} "
                         f"({first_line(e)}); its code fixes a width there (e.g. a view with a constant size). "
                         "Use the layer's own shape, or prune without --structured") from None
    finally:
        for h in hooks:
            h.remove()


def taylor_gradients(module, batches: Iterable[tuple], loss_of: Callable) -> Callable[[], None]:
    """A function that accumulates the gradients of ``loss_of(outputs, batch)`` over ``batches``."""
    def run():
        for batch_args, extra in batches:
            loss_of(module(*batch_args), extra).backward()
    return run


def count_macs(module, args: tuple) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on ``args`` (torch-pruning's counter)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(module, args)
    return int(macs), int(params)

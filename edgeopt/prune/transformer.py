"""Structured pruning of BERT-style encoders (Hugging Face / sentence-transformers): whole
attention heads and FFN neurons, the two widths inside a layer that nothing outside it depends
on. The hidden size (the residual stream, the embeddings, the output) is kept, so the pooled
embedding or the classifier's logits keep their shape.

Importance with data: an FFN neuron's mean |activation| times the norm of its output weights, a
head's mean contribution norm through the attention output projection (what removing it changes
in the residual stream); without data the same products over weight norms. Units are ranked
globally after dividing by each layer's mean, so a sensitive layer keeps more of its width.
The slicing is done with torch-pruning's layer pruning functions.

Saving: the pruned model is saved as its own family's folder with its per-layer widths in
config.json, which edgeopt's loader narrows the model to (models/hf_layers.py, below both). The
live module then exports like the unpruned one (TorchScript, eager attention), whose graph
onnxruntime's transformer fusions match.
"""

from __future__ import annotations

from typing import Callable

from edgeopt.errors import UsageError
from edgeopt.models.hf_layers import EncoderLayer, encoder_layers


def _head_norms(w_cols, head_size: int):
    """Per-head norm of the columns of an output projection (out, heads*head_size)."""
    heads = w_cols.shape[1] // head_size
    return w_cols.reshape(w_cols.shape[0], heads, head_size).pow(2).sum((0, 2)).sqrt()


def importance(layers: list[EncoderLayer], run_data: Callable[[], None] | None):
    """[(head scores, neuron scores)] per layer; data-driven when ``run_data`` runs the model on data."""
    import torch

    acts = [{"ffn": None, "heads": None, "n": 0} for _ in layers]
    hooks = []
    if run_data is not None:
        for i, L in enumerate(layers):
            def ffn_hook(m, inp, out, i=i):  # input of the FFN's output projection = the activations
                a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1])
                acts[i]["ffn"] = a.sum(0) + (0 if acts[i]["ffn"] is None else acts[i]["ffn"])
                acts[i]["n"] += a.shape[0]

            def head_hook(m, inp, out, i=i, L=L):  # per-head contribution to the residual stream
                ctx = inp[0].detach().reshape(-1, L.heads, L.head_size)
                w = m.weight.detach().reshape(m.weight.shape[0], L.heads, L.head_size)
                contrib = torch.einsum("thd,ohd->tho", ctx, w).norm(dim=-1).sum(0)
                acts[i]["heads"] = contrib + (0 if acts[i]["heads"] is None else acts[i]["heads"])
            hooks += [L.ffn_out.register_forward_hook(ffn_hook), L.attn_out.register_forward_hook(head_hook)]
        try:
            with torch.no_grad():
                run_data()
        finally:
            for h in hooks:
                h.remove()
    scores = []
    with torch.no_grad():
        for L, a in zip(layers, acts):
            w_out = L.ffn_out.weight.norm(dim=0)
            ffn = (a["ffn"] / max(a["n"], 1)) * w_out if a["ffn"] is not None else L.ffn_in.weight.norm(dim=1) * w_out
            heads = (a["heads"] if a["heads"] is not None else
                     _head_norms(L.attn_out.weight, L.head_size) * _head_norms(L.value.weight.T, L.head_size))
            scores.append((heads.float(), ffn.float()))
    return scores


def _global_keep(scores: list, ratio: float, minimum: int, multiple: int) -> list[list[int]]:
    """Indices to keep per layer: the top (1 - ratio) of all units by layer-normalized score,
    each layer's count rounded to ``multiple`` and at least ``minimum``."""
    import torch

    normed = [s / s.mean().clamp(min=1e-12) for s in scores]
    total = sum(len(s) for s in normed)
    n_keep = int(round(total * (1 - ratio)))
    if n_keep <= 0:
        return [[] for _ in normed]
    thres = torch.cat(normed).sort(descending=True).values[n_keep - 1]
    keep = []
    for s in normed:
        k = int((s >= thres).sum())
        if multiple > 1:
            k = int(round(k / multiple)) * multiple
        k = min(len(s), max(minimum, k))
        keep.append(sorted(torch.argsort(s, descending=True)[:k].tolist()))
    return keep


def prune_encoder(root, *, ratio: float, head_ratio: float, round_to: int | None,
                  run_data: Callable[[], None] | None, name: str) -> dict:
    """Prune ``root``'s encoder layers in place; returns per-layer widths before / after."""
    import torch_pruning as tp

    layers = encoder_layers(root)
    if not layers:
        raise UsageError(f"torch-pruning cannot prune {name}: structured pruning of transformers needs BERT-style "
                         "layers (attention.self.query/key/value, intermediate.dense, output.dense); found none")
    multiple = round_to or 1
    for i, L in enumerate(layers):
        if L.neurons * (1 - ratio) < 1:
            raise UsageError(f"ratio {ratio} would remove all {L.neurons} FFN neurons of layer {i}; choose a lower "
                             "ratio")
    scores = importance(layers, run_data)
    keep_ffn = _global_keep([s[1] for s in scores], ratio, multiple, multiple)
    keep_heads = _global_keep([s[0] for s in scores], head_ratio, 1, 1) if head_ratio > 0 else \
        [list(range(L.heads)) for L in layers]
    before = [{"heads": L.heads, "ffn": L.neurons} for L in layers]
    for L, kf, kh in zip(layers, keep_ffn, keep_heads):
        drop_f = sorted(set(range(L.neurons)) - set(kf))
        if drop_f:
            tp.prune_linear_out_channels(L.ffn_in, drop_f)
            tp.prune_linear_in_channels(L.ffn_out, drop_f)
        drop_h = sorted(set(range(L.heads)) - set(kh))
        if drop_h:
            idx = [h * L.head_size + d for h in drop_h for d in range(L.head_size)]
            head_size = L.head_size
            for lin in (L.query, L.key, L.value):
                tp.prune_linear_out_channels(lin, idx)
            tp.prune_linear_in_channels(L.attn_out, idx)
            L.attention.num_attention_heads = L.query.out_features // head_size
            L.attention.all_head_size = L.query.out_features
    after = [{"heads": L.heads, "ffn": L.neurons} for L in layers]
    return {f"layer.{i}": {"before": b, "after": a} for i, (b, a) in enumerate(zip(before, after))}

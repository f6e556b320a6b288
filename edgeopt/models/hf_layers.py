"""The structure of a Hugging Face model that loading, exporting and pruning all read: the
PreTrainedModel inside a wrapper, its BERT-style encoder layers, and the per-layer widths
(attention heads, FFN neurons) that a pruned folder records in config.json under
:data:`WIDTHS_KEY`.

Per-layer widths fit no ``BertConfig`` (one ``intermediate_size``, one ``num_attention_heads``;
transformers 5 dropped ``pruned_heads``): the loader (models/hf.py) builds the model at the
config's widths, narrows each layer to its recorded widths (:func:`narrow_to`) and loads the
pruned weights over it. prune/transformer.py decides what to cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.errors import UsageError

WIDTHS_KEY = "edgeopt_pruned_widths"  # config.json: [{"heads": h, "ffn": f}, ...] per encoder layer


def pretrained(module):
    """The outermost transformers PreTrainedModel inside ``module``, or None."""
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return None
    return next((m for m in module.modules() if isinstance(m, PreTrainedModel)), None)


@dataclass
class EncoderLayer:
    query: object
    key: object
    value: object
    attn_out: object
    ffn_in: object
    ffn_out: object
    attention: object  # the self-attention module (num_attention_heads, attention_head_size)

    @property
    def head_size(self) -> int:
        return int(self.attention.attention_head_size)

    @property
    def heads(self) -> int:
        return self.query.out_features // self.head_size

    @property
    def neurons(self) -> int:
        return self.ffn_in.out_features


def encoder_layers(root) -> list[EncoderLayer]:
    """The BERT-style layers of ``root`` (attention.self.query/key/value, attention.output.dense,
    intermediate.dense, output.dense), in order; [] when root has none."""
    found = []
    for _, m in root.named_modules():
        att = getattr(m, "attention", None)
        sa = getattr(att, "self", None)
        inter, out = getattr(m, "intermediate", None), getattr(m, "output", None)
        if sa is None or inter is None or out is None or not hasattr(sa, "query"):
            continue
        if not hasattr(sa, "attention_head_size") or not hasattr(getattr(att, "output", None), "dense"):
            continue
        found.append(EncoderLayer(sa.query, sa.key, sa.value, att.output.dense, inter.dense, out.dense, sa))
    return found


def widths_of(root) -> list[dict]:
    """[{"heads": h, "ffn": f}] per encoder layer of ``root``: what :data:`WIDTHS_KEY` records."""
    return [{"heads": L.heads, "ffn": L.neurons} for L in encoder_layers(root)]


def narrow_to(root, widths: list[dict], name: str) -> None:
    """Narrow ``root``'s encoder layers (built at the config's full widths) to ``widths`` by keeping
    their first heads / neurons; the pruned weights are loaded over them afterwards."""
    import torch_pruning as tp

    layers = encoder_layers(root)
    if len(layers) != len(widths):
        raise UsageError(f"{name}: config.json records pruned widths for {len(widths)} layers but the model has "
                         f"{len(layers)}; re-run edgeopt prune")
    for i, (L, w) in enumerate(zip(layers, widths)):
        heads, ffn = int(w["heads"]), int(w["ffn"])
        if not (0 < heads <= L.heads and 0 < ffn <= L.neurons):
            raise UsageError(f"{name}: recorded widths of layer {i} ({heads} heads, {ffn} FFN neurons) do not fit its "
                             f"config ({L.heads} heads, {L.neurons} neurons); re-run edgeopt prune")
        if ffn < L.neurons:
            drop = list(range(ffn, L.neurons))
            tp.prune_linear_out_channels(L.ffn_in, drop)
            tp.prune_linear_in_channels(L.ffn_out, drop)
        if heads < L.heads:
            head_size = L.head_size
            drop = list(range(heads * head_size, L.heads * head_size))
            for lin in (L.query, L.key, L.value):
                tp.prune_linear_out_channels(lin, drop)
            tp.prune_linear_in_channels(L.attn_out, drop)
            L.attention.num_attention_heads = heads
            L.attention.all_head_size = heads * head_size

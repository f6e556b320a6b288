"""Making a pruned copy of a model at a ratio: structured (channels of CNNs / MLPs through
Torch-Pruning, heads and FFN neurons of transformers) or unstructured (weights), checked to run;
and what prune reads off a model (its family, its per-layer widths, the default block width)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgeopt.models.base import LoadedModel

TRANSFORMERS = ("hf", "sentence-transformers")
PRUNABLE = ("state_dict", "pickle", *TRANSFORMERS)


def default_round_to() -> tuple[int, str]:
    """Kept widths in multiples of the CPU's float32 vector width: onnxruntime's NCHWc convolutions
    and OpenVINO's blocked layouts work in blocks of 16 channels with AVX-512 and 8 with AVX2; a
    width off the block pads to the next one (Torch-Pruning #38: 3x slower in ORT until rounded)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512f" in flags:
        return 16, "16: the float32 block of AVX-512 kernels (this CPU has avx512f)"
    return 8, "8: the float32 block of AVX2 kernels"


def copy_model(model: LoadedModel) -> LoadedModel:
    """A deep copy of the model's module as a new LoadedModel (the original stays the reference)."""
    from edgeopt.models.adapter import torch_reference

    module = copy.deepcopy(model.module)
    meta = dict(model.metadata)
    if model.family == "sentence-transformers":
        meta["sentence_transformer"] = module.st
    return dataclasses.replace(model, module=module, reference=torch_reference(module, model.io), metadata=meta)


def widths(model: LoadedModel) -> dict:
    from edgeopt.prune.structured import layer_widths
    from edgeopt.models.hf_layers import encoder_layers

    if model.family in TRANSFORMERS:
        return {f"layer.{i}": {"heads": L.heads, "ffn": L.neurons} for i, L in enumerate(encoder_layers(model.module))}
    return {k.removeprefix("inner."): v for k, v in layer_widths(model.module).items()}


@dataclass(frozen=True)
class Pruner:
    """Makes a pruned copy of ``model`` at a ratio, checked to run, and says what was done."""
    model: LoadedModel
    train: object | None  # --data (edgeopt.data Dataset): importance from activations / gradients
    task: str | None
    structured: bool
    rounding: int | None
    auto_round: bool  # no --round-to: the default block may be halved for a ratio
    head_ratio: float | None
    importance_samples: int
    mac_weight: float

    def __call__(self, r: float) -> tuple[LoadedModel, dict]:
        from edgeopt.prune import recover as rec
        from edgeopt.prune import structured as st
        from edgeopt.prune import transformer as tr
        from edgeopt.prune import unstructured as un

        m, ds = self.model, self.train
        p = copy_model(m)
        args = rec.example_args(m, ds)
        if not self.structured:
            keep = st.output_layers(p.module, args)
            info = un.prune_weights(p.module, r, keep)
        elif m.family in TRANSFORMERS:
            def run_data():  # activations on --data rank the neurons / heads
                for b, _ in rec.batches(m, ds, self.importance_samples):
                    p.module(*b)
            info = {"layers": tr.prune_encoder(p.module, ratio=r, head_ratio=r if self.head_ratio is None
                                               else self.head_ratio, round_to=self.rounding,
                                               run_data=run_data if ds is not None else None,
                                               name=m.name)}
        else:
            grads = None
            if ds is not None:
                grads = st.taylor_gradients(p.module, rec.batches(m, ds, self.importance_samples),
                                            rec.taylor_loss(self.task))
            used = st.prune_channels(p.module, args, ratio=r, round_to=self.rounding, gradients=grads, name=m.name,
                                     auto_round=self.auto_round, mac_weight=self.mac_weight)
            info = {"round_to": used}
        st.check_forward(p.module, args, m.name)
        for prm in p.module.parameters():
            prm.requires_grad_(False)
        return p, info

"""Unstructured global magnitude pruning (torch.nn.utils.prune), made permanent.

Zeroes the smallest-magnitude weights across all conv / linear layers (output layers excepted).
The tensors keep their shapes, so dense runtimes (onnxruntime, OpenVINO, TensorRT on CPU / GPU)
run exactly as much arithmetic as before: what it buys is a smaller compressed file (zeros
compress), not speed. The report says so.
"""

from __future__ import annotations

import gzip
import io


def prune_weights(module, ratio: float, keep: list) -> dict:
    """Zero ``ratio`` of the weights of module's conv / linear layers (not those in ``keep``), ranked
    globally by magnitude; returns the achieved sparsity."""
    import torch
    from torch.nn.utils import prune as tprune

    from edgeopt.prune.structured import _roots

    targets = [(m, "weight") for m in module.modules()
               if isinstance(m, _roots()) and m not in keep and getattr(m, "weight", None) is not None]
    if not targets:
        from edgeopt.errors import UsageError

        raise UsageError("the model has no conv / linear weights besides its output layers to prune")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=ratio)
    for m, name in targets:
        tprune.remove(m, name)  # permanent: weight = weight_orig * mask, hooks gone
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    all_params = sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        all_zeros = sum(int((p == 0).sum()) for p in module.parameters())
    return {"pruned_layers": len(targets), "layer_sparsity": zeros / total, "model_sparsity": all_zeros / all_params}


def compressed_bytes(module) -> int:
    """Size of the module's weights saved and gzip-compressed: what a zip bundle would ship."""
    import torch

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return len(gzip.compress(buf.getvalue(), compresslevel=6))

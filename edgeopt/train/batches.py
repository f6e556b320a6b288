"""Batches of a ``Dataset`` as torch tensors, model calls, and the augmentations of distillation:
image flip / crop / colour jitter and text token masking as tensor ops (no torchvision), and
feature noise for tabular inputs. Each draws from the step's own generator (reproducible, resumable)."""

from __future__ import annotations

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.data.images import MEAN, STD


def collate(ds: Dataset, idx) -> dict[str, np.ndarray]:
    """Stack samples ``idx``; ragged token ids are right-padded with the dataset's pad values."""
    from edgeopt.data.dataset import stack

    return stack([ds.samples[int(i)] for i in idx], ds.pad_values)


def tensors(feeds: dict, names: list[str]):
    import torch

    return [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]


def pooled(out, feeds_t: dict):
    """The first output; a (batch, sequence, hidden) output is mean-pooled over the attention mask."""
    import torch

    y = out[0] if isinstance(out, (tuple, list)) else out
    if y.ndim == 3:
        mask = feeds_t.get("attention_mask")
        mask = torch.ones(y.shape[:2], dtype=y.dtype) if mask is None else mask.to(y.dtype)
        y = (y * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return y


def forward(module, feeds: dict, names: list[str]):
    args = tensors(feeds, names)
    return pooled(module(*args), dict(zip(names, args)))


def is_image(x) -> bool:
    return x.ndim == 4 and x.is_floating_point() and x.shape[1] == 3


def augment_images(x, gen):
    """Random horizontal flip, a random crop of 80-100 % of each side resized back, and
    brightness / contrast / saturation jitter of +-20 % (on ImageNet-normalized input)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    out = []
    for i in range(b):
        s = 0.8 + 0.2 * float(torch.rand(1, generator=gen))
        ch, cw = max(1, int(h * s)), max(1, int(w * s))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        crop = x[i:i + 1, :, top:top + ch, left:left + cw]
        out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    x = torch.cat(out) * std + mean  # to [0, 1] pixels
    jitter = lambda: (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen))  # noqa: E731
    x = x * jitter()
    grey_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - grey_mean) * jitter() + grey_mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * jitter() + grey
    return (x.clamp(0, 1) - mean) / std


def mask_tokens(ids, attention_mask, tokenizer, gen, share: float = 0.15):
    """Replace ``share`` of the real (non-special, non-padding) tokens with the mask token."""
    import torch

    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=ids.dtype)
    real = ~torch.isin(ids, special)
    if attention_mask is not None:
        real &= attention_mask.bool()
    hit = (torch.rand(ids.shape, generator=gen) < share) & real
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    return torch.where(hit, torch.full_like(ids, int(mask_id or 0)), ids)


def augment(args: list, names: list[str], gen, tokenizer=None, noise: float = 0.05) -> list:
    """Augment a student's inputs (positional, in ``names`` order) for classifier / ranker distillation."""
    import torch

    by_name = dict(zip(names, args))
    out = []
    for name, x in zip(names, args):
        if is_image(x):
            x = augment_images(x, gen)
        elif name == "input_ids" and tokenizer is not None:
            x = mask_tokens(x, by_name.get("attention_mask"), tokenizer, gen)
        elif x.is_floating_point() and x.shape[0] > 1:  # tabular features: noise at 5 % of each one's spread
            x = x + torch.randn(x.shape, generator=gen) * noise * x.std(0, keepdim=True)
        out.append(x)
    return out

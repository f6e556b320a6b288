"""Tiny real models for tests (architectures used with --arch tests/tiny_models.py:FACTORY)."""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNetTiny(nn.Module):
    """A residual CNN classifier (stem, two residual blocks, global pool, linear head)."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def resnet_tiny(num_classes=10, width=16):
    return ResNetTiny(num_classes, width)


class KwOnly(nn.Module):
    """Keyword-only forward with a dict output, as Hugging Face models have."""

    def __init__(self, vocab=50, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, 3)

    def forward(self, *, input_ids, attention_mask):
        h = self.emb(input_ids) * attention_mask.unsqueeze(-1).float()
        return {"logits": self.proj(h.sum(1)), "pooled": h.mean(1)}


def kwonly(vocab=50, dim=8):
    return KwOnly(vocab, dim)


class HardCodedWidth(nn.Module):
    """A CNN whose forward fixes a channel count in a view (what structured pruning cannot follow)."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)
        self.width = width

    def forward(self, x):
        y = torch.relu(self.mix(torch.relu(self.conv(x))))
        return self.head(y.mean(dim=(2, 3)).view(-1, self.width))


def hard_coded_width(num_classes=10, width=16):
    return HardCodedWidth(num_classes, width)


def mlp(features=12, hidden=32, outputs=1):
    """A tabular ranker / regressor: features -> one logit or value."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

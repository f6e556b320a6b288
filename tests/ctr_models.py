"""Tiny CTR rankers as e-commerce teams build them (issue 30): a fixed number of categorical fields
as integer ids, embedded and flattened, next to dense features; one click logit (or probability).

Used with --arch tests/ctr_models.py:FACTORY --input cats:1x8:int64 --input dense:1x6:float32.
"""

import torch
from torch import nn


class DeepFM(nn.Module):
    """DeepFM-style: one embedding table per field, an FM term over the field embeddings and an
    MLP over their flattened concatenation plus the dense features."""

    def __init__(self, fields=8, vocab=100, dim=16, dense=6, hidden=128, probs=False):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(vocab, dim) for _ in range(fields))
        self.linear = nn.ModuleList(nn.Embedding(vocab, 1) for _ in range(fields))
        self.mlp = nn.Sequential(nn.Linear(fields * dim + dense, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.dense = nn.Linear(dense, 1)
        self.probs = probs

    def forward(self, cats, dense):
        e = torch.stack([t(cats[:, i]) for i, t in enumerate(self.tables)], dim=1)  # (batch, fields, dim)
        fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1, keepdim=True)
        first = sum(t(cats[:, i]) for i, t in enumerate(self.linear)) + self.dense(dense)
        logit = first + fm + self.mlp(torch.cat([e.flatten(1), dense], dim=1))
        return torch.sigmoid(logit) if self.probs else logit


class DCN(nn.Module):
    """DCN-style: one shared embedding table (fields offset into it), cross layers and a deep tower."""

    def __init__(self, fields=8, vocab=100, dim=8, dense=6, cross=2, hidden=64):
        super().__init__()
        self.vocab = vocab
        self.table = nn.Embedding(fields * vocab, dim)
        width = fields * dim + dense
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cross))
        self.deep = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(width + hidden, 1)

    def forward(self, cats, dense):
        offsets = torch.arange(cats.shape[1], device=cats.device) * self.vocab
        x0 = torch.cat([self.table(cats + offsets).flatten(1), dense], dim=1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.head(torch.cat([x, self.deep(x0)], dim=1))


class DictRanker(nn.Module):
    """torch-rechub style: forward(x) takes one dict of named tensors (one id per sparse feature,
    plus a dense block) and returns a click probability."""

    def __init__(self, names=("user_id", "item_id", "cate_id"), vocab=50, dim=8, dense=4, hidden=32):
        super().__init__()
        self.names = list(names)
        self.tables = nn.ModuleDict({n: nn.Embedding(vocab, dim) for n in names})
        self.mlp = nn.Sequential(nn.Linear(len(names) * dim + dense, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        e = torch.cat([self.tables[n](x[n]) for n in self.names] + [x["dense"]], dim=1)
        return torch.sigmoid(self.mlp(e))


def deepfm(fields=8, vocab=100, dim=16, dense=6, hidden=128, probs=False):
    return DeepFM(fields, vocab, dim, dense, hidden, probs)


def dcn(fields=8, vocab=100, dim=8, dense=6):
    return DCN(fields, vocab, dim, dense)


def dict_ranker(vocab=50):
    return DictRanker(vocab=vocab)


DEEPFM_INPUTS = ["cats:1x8:int64", "dense:1x6:float32"]
DICT_INPUTS = ["user_id:1:int64", "item_id:1:int64", "cate_id:1:int64", "dense:1x4:float32"]

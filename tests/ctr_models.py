"""Tiny CTR rankers as e-commerce teams build them (issue 30): a fixed number of categorical fields
as integer ids, embedded and flattened, next to dense features; one click logit (or probability).

Used with --arch tests/ctr_models.py:FACTORY --input cats:1x8:int64 --input dense:1x6:float32.
"""

import torch
from torch import nn


class DeepFM(nn.Module):
    """DeepFM-style: the fields' ids embedded in one table, an FM term over the field embeddings and
    an MLP over their flattened concatenation plus the dense features (so the MLP's width fixes
    the number of fields)."""

    def __init__(self, fields=8, vocab=100, dim=16, dense=6, hidden=128, probs=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.linear = nn.Embedding(vocab, 1)
        self.mlp = nn.Sequential(nn.Linear(fields * dim + dense, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.dense = nn.Linear(dense, 1)
        self.probs = probs

    def forward(self, cats, dense):
        e = self.emb(cats)  # (batch, fields, dim)
        fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1, keepdim=True)
        first = self.linear(cats).sum(1) + self.dense(dense)
        logit = first + fm + self.mlp(torch.cat([e.flatten(1), dense], dim=1))
        return torch.sigmoid(logit) if self.probs else logit


class DCN(nn.Module):
    """DCN-style: one shared embedding table (fields offset into it), cross layers and a deep tower.
    ``field_dims``: each field's own number of ids, offsets their running sum (DeepCTR's and
    pytorch-fm's FeaturesEmbedding); else every field has ``vocab`` ids."""

    def __init__(self, fields=8, vocab=100, dim=8, dense=6, cross=2, hidden=64, field_dims=None):
        super().__init__()
        self.vocab = vocab
        if field_dims is not None:
            fields = len(field_dims)
            starts = torch.tensor([0, *field_dims[:-1]]).cumsum(0)
            self.register_buffer("offsets", starts, persistent=False)
        self.table = nn.Embedding(sum(field_dims) if field_dims else fields * vocab, dim)
        width = fields * dim + dense
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cross))
        self.deep = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(width + hidden, 1)

    def forward(self, cats, dense):
        offsets = (self.offsets if hasattr(self, "offsets") else
                   torch.arange(cats.shape[1], device=cats.device) * self.vocab)
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


class FloatIds(nn.Module):
    """Ids kept in a float tensor (as some pipelines hand over one float feature matrix), cast to
    long inside: normal-float sample inputs are not ids it can embed."""

    def __init__(self, fields=4, vocab=20, dim=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(fields * dim, 1)

    def forward(self, x):
        return self.head(self.emb(x.long()).flatten(1))


class CodedIds(nn.Module):
    """Category codes in a float tensor that start at ``base`` (raw codes 100..119, as a feature
    pipeline may hand them over), shifted to table rows inside: neither normal floats nor small
    whole numbers are codes it can embed; only the user's rows are."""

    def __init__(self, fields=4, vocab=20, dim=4, base=100):
        super().__init__()
        self.base = base
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(fields * dim, 1)

    def forward(self, x):
        return self.head(self.emb(x.long() - self.base).flatten(1))


def float_ids():
    return FloatIds()


def coded_ids():
    return CodedIds()


def deepfm(fields=8, vocab=100, dim=16, dense=6, hidden=128, probs=False):
    return DeepFM(fields, vocab, dim, dense, hidden, probs)


def dcn(fields=8, vocab=100, dim=8, dense=6, field_dims=None):
    return DCN(fields, vocab, dim, dense, field_dims=field_dims)


def dict_ranker(vocab=50):
    return DictRanker(vocab=vocab)


DEEPFM_INPUTS = ["cats:1x8:int64", "dense:1x6:float32"]
DICT_INPUTS = ["user_id:1:int64", "item_id:1:int64", "cate_id:1:int64", "dense:1x4:float32"]


def click_rows(n, seed=0, fields=8, vocab=100, dense=6, shift=0, drift=0.0):
    """Synthetic click rows: a hidden per-id weight plus a dense term decides the click probability;
    ``shift`` moves the ids to another part of each table (new items for an update); ``drift``
    (0..1) moves every id's weight toward another draw (tastes that changed: what an update must
    learn and the old period contradicts)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(1234).normal(0, 1.0, vocab)
    if drift:
        weights = np.sqrt(1 - drift ** 2) * weights + drift * np.random.default_rng(4321).normal(0, 1.0, vocab)
    lo = shift % vocab
    cats = (lo + rng.integers(0, vocab // 2, (n, fields))) % vocab
    x = rng.standard_normal((n, dense)).astype("float32")
    logit = weights[cats].sum(1) / np.sqrt(fields) * 2 + x[:, 0] - 0.5
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return {"cats": cats.astype("int64"), "dense": x, "labels": labels}


def train(model, rows, epochs=6, lr=1e-2, probs=False, batch=64):
    """A few epochs of BCE on ``rows`` (as click_rows gives them)."""
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cats, dense = torch.from_numpy(rows["cats"]), torch.from_numpy(rows["dense"])
    y = torch.from_numpy(rows["labels"]).float()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            out = model(cats[idx], dense[idx]).reshape(-1)
            loss = (F.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), y[idx]) if probs
                    else F.binary_cross_entropy_with_logits(out, y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()

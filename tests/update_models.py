"""Tiny models for the update tests: a GRU4Rec-style session recommender and an MLP classifier."""

import torch


class SessionGRU(torch.nn.Module):
    """Next-item scores from a session's item ids (left-padded with 0, which is no item)."""

    def __init__(self, n_items=50, dim=16):
        super().__init__()
        self.items = torch.nn.Embedding(n_items, dim, padding_idx=0)
        self.gru = torch.nn.GRU(dim, dim, batch_first=True)
        self.out = torch.nn.Linear(dim, n_items)

    def forward(self, item_ids):
        h, _ = self.gru(self.items(item_ids))
        return self.out(h[:, -1])


class MLP(torch.nn.Module):
    def __init__(self, features=8, classes=4):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(features, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes))

    def forward(self, x):
        return self.net(x)


def session_gru(**kw):
    return SessionGRU(**kw)


def mlp(**kw):
    return MLP(**kw)


def trained_session_gru(x, y, *, epochs, n_items=50, dim=16):
    """A SessionGRU fitted (seed 0, Adam 1e-2, batches of 64) on sessions ``x`` and their next item ``y``:
    the starting model of the update and federate tests."""
    torch.manual_seed(0)
    model = SessionGRU(n_items=n_items, dim=dim)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(model(X[i:i + 64]), Y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model

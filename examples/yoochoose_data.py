"""Write what examples/recsys.yaml reads, from YOOCHOOSE clicks (RecSys Challenge 2015).

    python examples/yoochoose_data.py [--data ../shared/data] [--epochs 3] [--dim 64]
    edgeopt run examples/yoochoose/recsys.yaml

Reads DATA/yoochoose/yoochoose-clicks-100k_train_full.txt (the earlier period) and ..._test.txt
(the later one) and writes examples/yoochoose/:
- recsys.py: the session GRU (item embedding + GRU + a score per item) as `session_gru(n_items, dim)`;
- recsys.pt: that model trained --epochs on the earlier period's sessions (what the stores run);
- old_sessions.npz / new_sessions.npz: the earlier / later period's sessions as `item_ids` (the 5
  items before, left-padded with 0, which is no item) and `labels` (the next item);
- release.key / release.pub and recsys-1.0.edgepkg: the stores' current version, exported and signed;
- recsys.yaml: examples/recsys.yaml with `arch_kwargs` set to this data's item count and --dim.
Items are numbered in order of first click over both periods, so a later-period item the earlier
one never saw (none in this 100k sample) would get an id past the model's table, which update grows.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONTEXT = 5  # items before the one to predict: examples/recsys.yaml's item_ids:batchx5:int64

ARCH = '''"""A GRU4Rec-style session recommender: next-item scores from a session's last item ids."""

import torch


class SessionGRU(torch.nn.Module):
    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.items = torch.nn.Embedding(n_items, dim, padding_idx=0)
        self.gru = torch.nn.GRU(dim, dim, batch_first=True)
        self.out = torch.nn.Linear(dim, n_items)

    def forward(self, item_ids):
        h, _ = self.gru(self.items(item_ids))
        return self.out(h[:, -1])


def session_gru(n_items: int = 50, dim: int = 16):
    return SessionGRU(n_items, dim)
'''


def sessions(path: Path) -> list[np.ndarray]:
    """Each session's item ids in click order (sessions of one click predict nothing: dropped)."""
    raw = np.loadtxt(path, skiprows=1, dtype=np.float64)  # SessionId, ItemId, Time
    raw = raw[np.lexsort((raw[:, 2], raw[:, 0]))]
    cuts = np.flatnonzero(np.diff(raw[:, 0])) + 1
    return [s[:, 1].astype(np.int64) for s in np.split(raw, cuts) if len(s) >= 2]


def prefixes(period: list[np.ndarray], ids: dict) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for s in period:
        s = np.array([ids[i] for i in s])
        for t in range(1, len(s)):
            ctx = s[max(0, t - CONTEXT):t]
            xs.append(np.pad(ctx, (CONTEXT - len(ctx), 0)))
            ys.append(s[t])
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


def train(module, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    module.train()
    for epoch in range(epochs):
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 64)):
            loss = torch.nn.functional.cross_entropy(module(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"base model: epoch {epoch + 1}/{epochs}, last batch loss {loss.item():.3f}", file=sys.stderr, flush=True)
    module.eval()


def edgeopt(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "edgeopt.cli", *args], cwd=cwd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "yoochoose")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the base model")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    source = args.data / "yoochoose"
    old_file, new_file = source / "yoochoose-clicks-100k_train_full.txt", source / "yoochoose-clicks-100k_test.txt"
    for f in (old_file, new_file):
        if not f.is_file():
            sys.exit(f"yoochoose_data.py: {f} not found; pass --data (the folder holding yoochoose/, see SOURCES.md)")
    import torch

    old, new = sessions(old_file), sessions(new_file)
    ids: dict = {}
    for s in (*old, *new):
        for item in s:
            ids.setdefault(item, len(ids) + 1)  # 0 is padding
    n_old = 1 + len({i for s in old for i in s})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "recsys.py").write_text(ARCH)
    x_old, y_old = prefixes(old, ids)
    x_new, y_new = prefixes(new, ids)
    np.savez(out / "old_sessions.npz", item_ids=x_old, labels=y_old)
    np.savez(out / "new_sessions.npz", item_ids=x_new, labels=y_new)
    print(f"{len(old)} / {len(new)} sessions, {len(y_old)} / {len(y_new)} next-item rows, {n_old - 1} items "
          f"in the earlier period, {len(ids) + 1 - n_old} new in the later one", file=sys.stderr)

    sys.path.insert(0, str(out))
    from recsys import session_gru

    base = session_gru(n_old, args.dim)
    train(base, x_old, y_old, epochs=args.epochs, seed=args.seed)
    torch.save(base.state_dict(), out / "recsys.pt")

    arch_kwargs = f'{{"n_items": {n_old}, "dim": {args.dim}}}'
    recipe = (HERE / "recsys.yaml").read_text()
    recipe, n = re.subn(r"arch_kwargs: \{[^}]*\}", f"arch_kwargs: {{n_items: {n_old}, dim: {args.dim}}}", recipe)
    assert n == 1, "examples/recsys.yaml has no arch_kwargs line to size"
    (out / "recsys.yaml").write_text(f"# Written by examples/yoochoose_data.py: examples/recsys.yaml sized to YOOCHOOSE's "
                                     f"{n_old - 1} items.\n" + recipe)
    for old_output in (out / "v1.0", out / "recsys-1.0.edgepkg", out / "recsys-out"):  # a rerun starts afresh
        shutil.rmtree(old_output, ignore_errors=True) if old_output.is_dir() else old_output.unlink(missing_ok=True)
    if not (out / "release.key").is_file():
        edgeopt("keygen", "-o", "release", cwd=out)
    edgeopt("export", "recsys.pt", "--arch", "recsys.py:session_gru", "--arch-kwargs", arch_kwargs,
            "--input", f"item_ids:batchx{CONTEXT}:int64", "--to", "onnx", "-o", "v1.0", cwd=out)
    edgeopt("package", "v1.0", "-o", "recsys-1.0.edgepkg", "--sign-key", "release.key", "--version", "1.0", cwd=out)
    print(f"wrote {out}; next: edgeopt run {out / 'recsys.yaml'}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Incremental update of a CTR ranker: forgetting, new-period AUC and compute for each --method.

    python benchmarks/update_ctr.py [--vocab 1000] [--old 20000] [--new 5000] [--lr 1e-2] [--drift 0.6] [--json FILE]

Model: the DeepFM-style ranker of tests/ctr_models.py (8 categorical fields, 6 dense floats, one
click logit). Synthetic click rows (tests/ctr_models.click_rows): the old period draws ids from
the lower half of the table, the new period from a window a quarter further on (half its ids are
new items), with per-id weights that drifted (``--drift`` 0.6: each weight moved toward another
draw, so what the new period teaches contradicts part of the old). Synthetic because the shared CTR samples hold 200
rows at most (SOURCES.md). Base: 6 epochs on the old rows. Each method runs ``edgeopt.update`` (3
epochs, batch 64, ``--lr`` 1e-2, AUC, the default strengths) with --old-data for forgetting; the full retrain
trains a fresh model on old + new rows for 6 epochs. Held out: 15 % of each period. The targets
are issue 22's (docs/PERFORMANCE.md, Yoochoose): forgetting <= 0.5x fine-tuning's, new AUC within
0.03 of fine-tuning, compute <= 0.25 of a full retrain (samples seen plus a third of the extra
forward passes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
ARCH = f"{ROOT / 'tests' / 'ctr_models.py'}:deepfm"


def _split(rows: dict, frac: float, seed: int) -> tuple[dict, dict]:
    idx = np.random.default_rng(seed).permutation(len(rows["labels"]))
    cut = int(len(idx) * (1 - frac))
    return {k: v[idx[:cut]] for k, v in rows.items()}, {k: v[idx[cut:]] for k, v in rows.items()}


def _auc(model, rows) -> float:
    import torch

    from edgeopt.optimize.metrics import roc_auc

    with torch.no_grad():
        s = model(torch.from_numpy(rows["cats"]), torch.from_numpy(rows["dense"])).numpy().reshape(-1)
    return roc_auc(rows["labels"], s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--old", type=int, default=20000)
    ap.add_argument("--new", type=int, default=5000)
    ap.add_argument("--lr", type=float, default=1e-2, help="update's learning rate (the base trained at 1e-2)")
    ap.add_argument("--drift", type=float, default=0.6, help="how far the new period's per-id weights moved")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    import ctr_models
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    work = Path(tempfile.mkdtemp(prefix="update-ctr-"))
    old_train, old_test = _split(ctr_models.click_rows(args.old, seed=1, vocab=args.vocab), 0.15, 0)
    new_train, new_test = _split(ctr_models.click_rows(args.new, seed=2, vocab=args.vocab, shift=args.vocab // 4,
                                                       drift=args.drift), 0.15, 1)
    for name, rows in (("old", old_train), ("old_test", old_test), ("new", new_train), ("new_test", new_test)):
        np.savez(work / f"{name}.npz", **rows)
    kwargs = {"vocab": args.vocab}
    torch.manual_seed(0)
    base = ctr_models.train(ctr_models.deepfm(**kwargs), old_train, batch=64)
    torch.save(base.state_dict(), work / "base.pt")
    retrain_rows = {k: np.concatenate([old_train[k], new_train[k]]) for k in old_train}
    torch.manual_seed(0)
    full = ctr_models.train(ctr_models.deepfm(**kwargs), retrain_rows, batch=64)
    retrain_samples = 6 * len(retrain_rows["labels"])
    table = [{"run": "base (old period only)", "old_auc": _auc(base, old_test), "new_auc": _auc(base, new_test)},
             {"run": "full retrain", "old_auc": _auc(full, old_test), "new_auc": _auc(full, new_test),
              "compute": 1.0}]
    inputs = [parse_input(s) for s in ctr_models.DEEPFM_INPUTS]
    for method in ("finetune", "lwf", "ewc", "replay"):
        r = update(model=work / "base.pt", arch=ARCH, arch_kwargs=kwargs, inputs=inputs, data=work / "new.npz",
                   old_data=work / "old.npz", eval_data=work / "new_test.npz", old_eval=work / "old_test.npz",
                   method=method, task="binary", epochs=3, batch_size=64, lr=args.lr, eval_size=10000,
                   out=work / method, progress=False)
        rep = r.report
        c = rep.compute
        table.append({"run": method, "old_auc": rep.after.old["auc"], "new_auc": rep.after.new["auc"],
                      "forgetting": rep.forgetting,
                      "compute": (c.train_samples_seen + c.extra_forward_samples / 3) / retrain_samples})
    ft = next(t for t in table if t["run"] == "finetune")
    for t in table[3:]:
        t["forgetting_vs_finetune"] = t["forgetting"] / ft["forgetting"] if ft["forgetting"] > 0 else None
        t["new_auc_vs_finetune"] = t["new_auc"] - ft["new_auc"]
    print("| run | old AUC | new AUC | forgetting | vs finetune's | new AUC - finetune's | compute vs retrain |")
    print("|---|---|---|---|---|---|---|")
    for t in table:
        def f(k, fmt):
            return fmt.format(t[k]) if t.get(k) is not None else "-"
        print(f"| {t['run']} | {f('old_auc', '{:.4f}')} | {f('new_auc', '{:.4f}')} | {f('forgetting', '{:.4f}')} | "
              f"{f('forgetting_vs_finetune', '{:.2f}x')} | {f('new_auc_vs_finetune', '{:+.4f}')} | "
              f"{f('compute', '{:.2f}')} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "table": table}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()

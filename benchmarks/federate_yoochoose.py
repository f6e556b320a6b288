"""Federated update across 10 non-IID stores on real clicks (YOOCHOOSE), against a centralized update
on the pooled data and against each store updating alone.

The session-GRU of benchmarks/update_yoochoose.py is trained on the earlier period (the previous
version). The later period's sessions are dealt to 10 stores, non-IID: a session goes to the store
that owns its first item's id bucket (80 %) or to a random store, so each store sees a skewed share
of the items and a new item appears only in the stores whose sessions hold it. Each store keeps 15 %
of its sessions as held-out data (STORE.eval.npz). The data's later period holds no item the earlier
lacks, so --new-share of its items are kept from the previous version (old sessions holding one are
dropped) and get the highest ids: they are new, and most reach only the stores owning the top
buckets. Reported, all on the held-out sessions of all stores pooled: Recall@20 / MRR@20 of the
federated model (``edgeopt.federate``, Flower's simulation engine), of ``edgeopt.update`` on the
pooled stores' data (centralized), and the mean over stores of ``edgeopt.update`` on one store's
data; forgetting (Recall@20 drop on the earlier period's held-out sessions) for each; bytes per
store per round. ``--wires full,rows,compact`` runs the federated update once per --wire (what a
store sends back, edgeopt/federate/wire.py) and reports each one's bytes and Recall@20;
``--no-baselines`` skips the centralized and store-alone updates (and the targets).

    python benchmarks/federate_yoochoose.py --json federate_yoochoose.json [--rounds 5] [--limit 3000]
    python benchmarks/federate_yoochoose.py --wires full,rows,compact --no-baselines --limit 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update_yoochoose import DATA, _spec, finish, number_items, prefixes, read, session_gru, split, train  # noqa: E402


def deal(sessions, n_stores: int, n_items: int, ids: dict, seed: int, skew: float = 0.8):
    rng = np.random.default_rng(seed)
    stores = [[] for _ in range(n_stores)]
    for s in sessions:
        own = ids[s[0]] * n_stores // n_items
        stores[own if rng.random() < skew else int(rng.integers(n_stores))].append(s)
    return stores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--update-epochs", type=int, default=3, help="centralized and store-alone updates")
    ap.add_argument("--epochs", type=int, default=5, help="the previous version's training")
    ap.add_argument("--method", default="lwf")
    ap.add_argument("--strategy", default="fedavg")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--new-share", type=float, default=0.1, help="share of the later period's items the previous "
                    "version never sees (the data's later period holds no new item of its own)")
    ap.add_argument("--limit", type=int, help="sessions per period (smoke tests)")
    ap.add_argument("--wires", default="rows", help="comma-separated --wire values, one federated run each")
    ap.add_argument("--no-baselines", action="store_true", help="skip the centralized and store-alone updates")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"shared data missing: {DATA} (see ../shared/data/SOURCES.md)", file=sys.stderr)
        return 2
    import torch

    from edgeopt.federate import federate
    from edgeopt.update import update

    torch.set_num_threads(1)
    old_s, new_s = read(DATA / "yoochoose-clicks-100k_train_full.txt"), read(DATA / "yoochoose-clicks-100k_test.txt")
    if args.limit:
        old_s, new_s = old_s[:args.limit], new_s[:args.limit]
    later = sorted({int(i) for s in new_s for i in s})
    unseen = set(np.random.default_rng(args.seed).choice(later, int(len(later) * args.new_share), replace=False).tolist())
    kept = [s for s in old_s if not unseen.intersection(s.tolist())]
    dropped, old_s = len(old_s) - len(kept), kept
    ids, n_old_items, n_items = number_items(old_s, new_s)
    work = Path(tempfile.mkdtemp(prefix="federate-yoochoose-"))
    old_tr, old_te = split(old_s, args.seed)
    for k, v in (("old_train", old_tr), ("old_eval", old_te)):
        x, y = prefixes(v, ids)
        np.savez(work / f"{k}.npz", item_ids=x, labels=y)
    (work / "stores").mkdir()
    pooled_tr, pooled_te, per_store = [], [], []
    for i, sessions in enumerate(deal(new_s, args.stores, n_items, ids, args.seed)):
        tr, te = split(sessions, args.seed)
        (xtr, ytr), (xte, yte) = prefixes(tr, ids), prefixes(te, ids)
        np.savez(work / "stores" / f"store{i:02d}.npz", item_ids=xtr, labels=ytr)
        np.savez(work / "stores" / f"store{i:02d}.eval.npz", item_ids=xte, labels=yte)
        pooled_tr.append((xtr, ytr))
        pooled_te.append((xte, yte))
        new_items = {int(v) for v in np.concatenate([xtr.ravel(), ytr]) if v >= n_old_items}
        per_store.append({"train": len(ytr), "held_out": len(yte), "items": len(np.unique(np.concatenate([xtr.ravel(), ytr]))),
                          "new_items": len(new_items)})
    for k, parts in (("pooled_train", pooled_tr), ("pooled_eval", pooled_te)):
        np.savez(work / f"{k}.npz", item_ids=np.concatenate([p[0] for p in parts]),
                 labels=np.concatenate([p[1] for p in parts]))
    results = {"data": {"stores": per_store, "items_old_period": n_old_items - 1,
                        "old_sessions_dropped_for_unseen_items": dropped,
                        "items_new_in_later_period": n_items - n_old_items},
               "settings": vars(args), "runs": {}}
    print(json.dumps(results["data"]), file=sys.stderr)

    t = time.perf_counter()
    base = session_gru(n_old_items, args.dim)
    x, y = prefixes(old_tr, ids)
    train(base, x, y, epochs=args.epochs, lr=1e-3, batch=64, seed=args.seed)
    torch.save(base.state_dict(), work / "base.pt")
    results["base_seconds"] = round(time.perf_counter() - t, 1)
    model = dict(model=work / "base.pt", arch=f"{Path(__file__).resolve().parent / 'update_yoochoose.py'}:session_gru",
                 arch_kwargs={"n_items": n_old_items, "dim": args.dim}, inputs=_spec(), metric="recall@20",
                 seed=args.seed)
    old = dict(old_data=work / "old_train.npz", old_eval=work / "old_eval.npz", eval_size=1_000_000)

    def upd(data, name):
        t = time.perf_counter()
        r = update(**model, **old, data=data, eval_data=work / "pooled_eval.npz", method=args.method,
                   epochs=args.update_epochs, batch_size=64, progress=False, out=work / f"out-{name}")
        return {"recall@20": r.report.after.new["recall@20"], "mrr@20": r.report.after.new["mrr@20"],
                "forgetting": r.forgetting, "samples_seen": r.report.compute.train_samples_seen,
                "seconds": round(time.perf_counter() - t, 1)}

    if not args.no_baselines:
        results["runs"]["centralized update (pooled stores)"] = upd(work / "pooled_train.npz", "central")
        print("central", results["runs"]["centralized update (pooled stores)"], file=sys.stderr)

    for i, wire in enumerate(args.wires.split(",")):
        t = time.perf_counter()
        r = federate(**model, **old, stores=work / "stores", out=work / f"out-federated-{wire}", rounds=args.rounds,
                     local_epochs=args.local_epochs, method=args.method, strategy=args.strategy, batch_size=64,
                     lr=1e-3, wire=wire)
        rep = r.report
        last = rep["global"]["stores_eval"]
        run = {"wire": wire, "recall@20": last["recall@20"], "mrr@20": last["mrr@20"], "forgetting": r.forgetting,
               "per_round_recall@20": [row["stores_eval"]["recall@20"] for row in rep["rounds"]],
               "bytes_per_store_per_round": {"down": rep["bytes"]["down_per_store_per_round"],
                                             "up": rep["bytes"]["up_per_store_per_round"]},
               "seconds": round(time.perf_counter() - t, 1)}
        results["runs"]["federated" if i == 0 else f"federated --wire {wire}"] = run
        print("federated", run, file=sys.stderr)
    if args.no_baselines:
        return finish(results, args.json, work)

    alone = [upd(work / "stores" / f"store{i:02d}.npz", f"alone{i}") for i in range(args.stores)]
    results["runs"]["stores alone (mean)"] = {k: float(np.mean([a[k] for a in alone]))
                                              for k in ("recall@20", "mrr@20", "forgetting", "seconds")}
    results["runs"]["stores alone (each)"] = alone
    fed, cen, alo = (results["runs"][k] for k in ("federated", "centralized update (pooled stores)",
                                                   "stores alone (mean)"))
    results["targets"] = {
        "federated_vs_centralized_recall": fed["recall@20"] / cen["recall@20"],
        "federated_over_alone_mean": fed["recall@20"] - alo["recall@20"],
        "forgetting_vs_centralized": fed["forgetting"] - cen["forgetting"]}
    tg = results["targets"]
    tg["met"] = bool(tg["federated_vs_centralized_recall"] >= 0.95 and tg["federated_over_alone_mean"] > 0
                     and tg["forgetting_vs_centralized"] <= 0.01)
    return finish(results, args.json, work)


if __name__ == "__main__":
    sys.exit(main())

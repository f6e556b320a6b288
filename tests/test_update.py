"""edgeopt update: methods on a tiny GRU session recommender and a tiny classifier, new ids growing
the tables, the forgetting gate, bad input; the yoochoose benchmark's smoke run (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_DATA, run_cli

GRU = f"{ROOT / 'tests' / 'update_models.py'}:session_gru"
MLP = f"{ROOT / 'tests' / 'update_models.py'}:mlp"
GRU_KW = {"n_items": 50, "dim": 16}


def _walks(rng, lo, hi, n, length=5, shift=0):
    """Sessions that step through items lo..hi-1 one at a time: the next item is learnable
    (``shift``: the label is that many items further, contradicting the plain walk)."""
    start = rng.integers(lo, hi, n)
    seq = np.stack([lo + (start - lo + k) % (hi - lo) for k in range(length + 1)], 1)
    y = lo + (seq[:, length] - lo + shift) % (hi - lo)
    return seq[:, :length].astype(np.int64), y.astype(np.int64)


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    """A GRU recommender over items 1..49 trained to follow the walk, its old data, new data with
    items 50..59 it has never seen, and new data that contradicts the old on items 1..24."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import trained_session_gru

    folder = tmp_path_factory.mktemp("update-gru")
    rng = np.random.default_rng(0)
    x, y = _walks(rng, 1, 50, 800)
    np.savez(folder / "old.npz", item_ids=x, labels=y)
    np.savez(folder / "new.npz", **dict(zip(("item_ids", "labels"), _walks(rng, 30, 60, 300))))
    np.savez(folder / "conflict.npz", **dict(zip(("item_ids", "labels"), _walks(rng, 1, 25, 300, shift=7))))
    torch.save(trained_session_gru(x, y, epochs=25, **GRU_KW).state_dict(), folder / "gru.pt")
    return folder


def _update(gru, out, **kw):
    from edgeopt.update import update

    args = dict(model=gru / "gru.pt", arch=GRU, arch_kwargs=GRU_KW, inputs=_spec(), data=gru / "new.npz",
                old_data=gru / "old.npz", out=out, epochs=5, lr=1e-2, batch_size=16, progress=False)
    return update(**{**args, **kw})


def _spec():
    from edgeopt.spec import parse_input

    return [parse_input("item_ids:batchx5:int64")]


def test_update_grows_tables_for_new_items_cli(gru, tmp_path):
    """The real command: new item ids 50..59 grow the embedding and the output layer to 60; the
    report has old/new metrics before and after, forgetting and compute; OUT loads as a model."""
    out = tmp_path / "out"
    r = run_cli("update", gru / "gru.pt", "--arch", GRU, "--arch-kwargs", json.dumps(GRU_KW), "--input",
                "item_ids:batchx5:int64", "--data", gru / "new.npz", "--old-data", gru / "old.npz",
                "--method", "lwf", "--epochs", "4", "--lr", "1e-2", "--batch-size", "16", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text())
    assert rep["model"]["grew"]["item_ids"]["from"] == 50 and rep["model"]["grew"]["item_ids"]["to"] == 60
    assert rep["model"]["grew"]["output"]["to"] == 60
    for part in ("old", "new"):
        assert set(rep["before"][part]) == {"top1", "recall@20", "mrr@20"}
        assert set(rep["after"][part]) == {"top1", "recall@20", "mrr@20"}
    # the model before the update cannot name items 50..59; after it, they reach its top 20 (new rows learnt)
    assert rep["after"]["new"]["recall@20"] > rep["before"]["new"]["recall@20"] + 0.1
    assert rep["forgetting"] == pytest.approx(rep["before"]["old"]["top1"] - rep["after"]["old"]["top1"])
    assert rep["compute"]["train_samples_seen"] >= 270 and rep["compute"]["seconds"] > 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["outputs"] == 60 and meta["id_space"] == {"item_ids": 60}

    from edgeopt.models import load_model

    m = load_model(out)
    assert m.io.outputs[0].shape[-1] == 60
    y = m.reference({"item_ids": np.array([[55, 56, 57, 58, 59]], dtype=np.int64)})
    assert y[m.io.outputs[0].name].shape == (1, 60)


@pytest.mark.parametrize("method", ["finetune", "ewc", "replay"])
def test_methods(gru, tmp_path, method):
    r = _update(gru, tmp_path / method, method=method)
    rep = r.report
    assert (tmp_path / method / "model.pt2").is_file() and rep.method == method
    new_train = rep.data.new_train_samples
    if method == "replay":  # half as many old samples as new ones, by default
        assert rep.tried[0].train_samples == new_train + int(np.ceil(0.5 * new_train))
    else:
        assert rep.tried[0].train_samples == new_train
    if method == "ewc":
        assert rep.compute.extra_forward_samples >= min(512, rep.data.old_train_samples)
    assert rep.after.new["mrr@20"] > rep.before.new["mrr@20"]  # the new items are learnt


def test_protecting_methods_forget_less_than_finetune(gru, tmp_path):
    """New data that contradicts the old: fine-tuning forgets; lwf and a strong ewc keep the old."""
    kw = dict(data=gru / "conflict.npz")
    ft = _update(gru, tmp_path / "ft", method="finetune", **kw).report
    lwf = _update(gru, tmp_path / "lwf", method="lwf", strength=2.0, **kw).report
    ewc = _update(gru, tmp_path / "ewc", method="ewc", strength=10.0, **kw).report
    assert ft.forgetting > 0.2
    assert lwf.forgetting < 0.5 * ft.forgetting and ewc.forgetting < 0.5 * ft.forgetting


def test_gate_refuses_and_writes_nothing(gru, tmp_path):
    out = tmp_path / "out"
    r = run_cli("update", gru / "gru.pt", "--arch", GRU, "--arch-kwargs", json.dumps(GRU_KW), "--input",
                "item_ids:batchx5:int64", "--data", gru / "conflict.npz", "--old-data", gru / "old.npz",
                "--method", "finetune", "--lr", "1e-2", "--batch-size", "16", "--max-forgetting", "0.02", "-o", out)
    assert r.returncode == 1, r.stderr
    assert "forgot too much" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_tune_tries_strengths(gru, tmp_path):
    r = _update(gru, tmp_path / "t", method="lwf", tune=True, epochs=1)
    tried = r.report.tried
    assert [t.strength for t in tried] == [0.5, 1.0, 2.0, 4.0]
    assert r.report.strength in (0.5, 1.0, 2.0, 4.0) and r.report.compute.candidates == 4


def test_update_of_an_update_grows_again(gru, tmp_path):
    """OUT (a model.pt2 folder) is a model too: its graph's tables grow for yet newer items."""
    first = _update(gru, tmp_path / "v2", method="finetune", epochs=1)
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "newer.npz", **dict(zip(("item_ids", "labels"), _walks(rng, 50, 65, 200))))
    from edgeopt.update import update

    r = update(model=first.out, data=tmp_path / "newer.npz", old_data=gru / "new.npz", method="lwf",
               out=tmp_path / "v3", epochs=1, progress=False)
    grew = r.report.model.grew["item_ids"]
    assert (grew["from"], grew["to"]) == (60, 65) and grew["parameter"].endswith("items.weight")
    assert json.loads((tmp_path / "v3" / "model.json").read_text())["outputs"] == 65


def test_classifier_new_classes(tmp_path):
    """A tabular classifier of 4 classes meets classes 4 and 5: its output layer grows to 6."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import MLP as Net

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (6, 8)).astype(np.float32)

    def blobs(classes, n):
        y = rng.choice(classes, n)
        return (centers[y] + rng.normal(0, 1, (n, 8))).astype(np.float32), y.astype(np.int64)

    x, y = blobs([0, 1, 2, 3], 400)
    np.savez(tmp_path / "old.npz", x=x, labels=y)
    np.savez(tmp_path / "new.npz", **dict(zip(("x", "labels"), blobs([2, 3, 4, 5], 300))))
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    r = update(model=tmp_path / "mlp.pt", arch=MLP, inputs=[parse_input("x:batchx8:float32")],
               data=tmp_path / "new.npz", old_data=tmp_path / "old.npz", method="replay", epochs=5, lr=1e-2,
               out=tmp_path / "out", progress=False)
    rep = r.report
    assert rep.metric == "top1" and rep.model.grew["output"] == {"from": 4, "to": 6,
                                                                 "parameter": "inner.net.2.weight"}
    assert rep.after.new["top1"] > rep.before.new["top1"] + 0.2
    assert rep.forgetting < 0.15


@pytest.mark.parametrize("case", ["ewc-no-old", "replay-no-old", "empty", "wrong-input", "forgetting-range",
                                  "forgetting-no-old", "no-labels"])
def test_bad_input(gru, tmp_path, case):
    base = ["update", gru / "gru.pt", "--arch", GRU, "--arch-kwargs", json.dumps(GRU_KW), "--input",
            "item_ids:batchx5:int64", "-o", tmp_path / "out"]
    new, old = ["--data", gru / "new.npz"], ["--old-data", gru / "old.npz"]
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "wrong.npz", features=np.zeros((10, 5), np.float32), labels=np.zeros(10, np.int64))
    np.savez(tmp_path / "nolabels.npz", item_ids=np.ones((10, 5), np.int64))
    args, expect = {
        "ewc-no-old": (new + ["--method", "ewc"], "needs --old-data"),
        "replay-no-old": (new + ["--method", "replay"], "needs --old-data"),
        "empty": (["--data", tmp_path / "empty.npz"], "empty"),
        "wrong-input": (["--data", tmp_path / "wrong.npz"], "the model takes"),
        "forgetting-range": (new + old + ["--max-forgetting", "1.5"], "out of range"),
        "forgetting-no-old": (new + ["--max-forgetting", "0.01"], "needs --old-data"),
        "no-labels": (["--data", tmp_path / "nolabels.npz"], "no labels"),
    }[case]
    r = run_cli(*base, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_metrics_rank_unknown_labels_as_misses():
    from edgeopt.update import metrics as mt

    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.1, 0.3]])
    labels = np.array([2, 7])  # 7: a label beyond the columns (an item the model never saw)
    assert mt.value("top1", "classify", scores, labels) == 0.0
    assert mt.value("recall@2", "classify", scores, labels) == 0.5
    assert mt.value("mrr@2", "classify", scores, labels) == pytest.approx(0.25)
    assert mt.drop("mse", 1.0, 1.5) == 0.5 and mt.drop("top1", 0.9, 0.8) == pytest.approx(0.1)


@pytest.mark.slow
def test_yoochoose_benchmark_smoke(tmp_path):
    if not (SHARED_DATA / "yoochoose").is_dir():
        pytest.skip(f"shared data missing: {SHARED_DATA / 'yoochoose'} (see ../shared/data/SOURCES.md)")
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_yoochoose.py"), "--limit", "300",
                        "--epochs", "1", "--update-epochs", "1", "--bundle", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert {"full retrain", "finetune", "lwf", "ewc", "replay"} <= set(res["runs"])
    assert res["bundle"]["delta_bytes"] < res["bundle"]["full_bytes"]
    assert res["bundle"]["compact_delta_bytes"] < res["bundle"]["delta_bytes"]


def test_compact_delta_moves_changed_weights_to_the_nearest_value_keeping_the_low_bits():
    from edgeopt.update.compact import nearest_keeping_low_bits

    rng = np.random.default_rng(0)
    old = (rng.standard_normal(20000) * 0.05).astype(np.float32)
    new = (old + rng.standard_normal(20000) * 1e-3).astype(np.float32)
    new[:100] = old[:100]
    new[100] = -old[100]  # a sign flip is a change like any other
    kept = nearest_keeping_low_bits(new, old)
    assert ((kept.view(np.uint32) & 0xFFFF) == (old.view(np.uint32) & 0xFFFF)).all()
    assert (kept[:100] == old[:100]).all()  # unchanged weights keep every bit
    assert (np.abs(kept - new) <= np.abs(new) * 2 ** -8).all()
    # nearest: no other value with those low bits is closer
    k = kept.view(np.int32).astype(np.int64)
    for step in (-(1 << 16), 1 << 16):
        other = (k + step).astype(np.int32).view(np.float32)
        assert (np.abs(kept - new) <= np.abs(other - new) + 1e-12).all()


def test_interrupted_update_resumes_to_the_same_model(gru, tmp_path, first_epoch_interrupt):
    """Each candidate strength checkpoints every epoch in OUT.checkpoint/; --resume continues the one
    an interrupted run was training, to what an uninterrupted run writes."""
    from edgeopt.errors import UsageError

    kw = dict(method="lwf", epochs=3, patience=3)
    whole = _update(gru, tmp_path / "whole", **kw).report
    first_epoch_interrupt.arm()
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _update(gru, out, **kw)
    assert not out.exists() and (tmp_path / "resumed.checkpoint" / "candidate-0" / "last.pt").is_file()
    first_epoch_interrupt.disarm()
    with pytest.raises(UsageError, match="different run"):
        _update(gru, out, **{**kw, "epochs": 4}, resume=True)
    resumed = _update(gru, out, **kw, resume=True).report
    assert resumed.training.resumed_at_epoch == 1
    assert [h["loss"] for h in resumed.training.history] == [h["loss"] for h in whole.training.history]
    assert resumed.after == whole.after and resumed.forgetting == whole.forgetting
    assert not (tmp_path / "resumed.checkpoint").exists()
    with pytest.raises(UsageError, match="no checkpoint"):
        _update(gru, tmp_path / "never", **kw, resume=True)

"""CTR rankers (issue 30): fixed categorical fields kept as given, click-model gates that can fail,
update with probability outputs. Models: tests/ctr_models.py."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgeopt.errors import UsageError
from tests.conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "tests"))
import ctr_models  # noqa: E402

ARCH = f"{ROOT / 'tests' / 'ctr_models.py'}"
RANKER_INPUTS = [a for spec in ctr_models.DEEPFM_INPUTS for a in ("--input", spec)]


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Trained DeepFM rankers (one ending in logits, one in a sigmoid) on synthetic click rows, with
    old rows (what they learnt) and new rows (ids they have not seen)."""
    import torch

    folder = tmp_path_factory.mktemp("ctr")
    old = ctr_models.click_rows(2000, seed=1)
    new = ctr_models.click_rows(1000, seed=2, shift=50)
    np.savez(folder / "old.npz", **old)
    np.savez(folder / "new.npz", **new)
    for kind in ("logits", "probs"):
        torch.manual_seed(0)
        model = ctr_models.train(ctr_models.deepfm(probs=kind == "probs"), old, probs=kind == "probs", epochs=3)
        torch.save(model.state_dict(), folder / f"deepfm_{kind}.pt")
    return folder


def _arch_args(kind="logits"):
    return ["--arch", f"{ARCH}:deepfm", "--arch-kwargs", json.dumps({"probs": kind == "probs"}), *RANKER_INPUTS]


# --- the shape a user gives is kept -------------------------------------------------------------

def test_ranker_exports_with_its_8_fields_and_onnx_matches_torch(clicks, tmp_path):
    import onnxruntime as ort
    import torch

    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "--to", "onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"][0] == {"name": "cats", "dtype": "int64", "shape": ["batch", 8]}
    sess = ort.InferenceSession(str(out / "model.onnx"))
    assert [i.shape for i in sess.get_inputs()][0][1] == 8
    rows = ctr_models.click_rows(64, seed=5)
    model = ctr_models.deepfm()
    model.load_state_dict(torch.load(clicks / "deepfm_logits.pt"))
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(rows["cats"]), torch.from_numpy(rows["dense"])).numpy()
    got = sess.run(None, {"cats": rows["cats"], "dense": rows["dense"]})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


# --- gates that can fail on one-column models ----------------------------------------------------

def test_auc_matches_scikit_learn_and_an_inverted_model_fails_it():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from edgeopt.optimize.metrics import evaluate, roc_auc

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    ref = (labels + rng.normal(0, 1.0, 400)).round(1).reshape(-1, 1)  # ties included
    assert roc_auc(labels, ref[:, 0]) == pytest.approx(sklearn_metrics.roc_auc_score(labels, ref[:, 0]))
    q = evaluate("auc", ref, -ref, labels)  # an INT8 model that inverted every score
    assert q.reference > 0.6 and q.drop > 0.2
    probs = 1 / (1 + np.exp(-ref))
    ll = evaluate("logloss", ref, ref, labels)
    assert ll.value == pytest.approx(sklearn_metrics.log_loss(labels, probs[:, 0])) and ll.drop == 0


def test_top1_refuses_a_single_column():
    from edgeopt.optimize.metrics import evaluate

    with pytest.raises(UsageError, match="one-column"):
        evaluate("top1", np.zeros((4, 1)), np.zeros((4, 1)), np.array([0, 1, 0, 1]))


def test_int8_of_a_click_model_gates_on_auc_by_default(clicks, tmp_path):
    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "--to", "onnx", "-o", out, "--int8",
                "--calib", clicks / "old.npz", "--calib-size", "256", "--eval-size", "256", "--no-speed-check",
                "--max-drop", "0.05")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["int8"]["metric"] == "auc"
    int8 = [a for a in m["artifacts"] if a["precision"] == "int8"]
    assert int8 and int8[0]["quality"]["metric"] == "auc" and int8[0]["quality"]["reference"] > 0.6


# --- update --task binary with probability outputs -----------------------------------------------

def test_detect_output_kind():
    from edgeopt.update.metrics import detect_output_kind, value

    assert detect_output_kind(np.array([[0.1], [0.9]])) == "probs"
    assert detect_output_kind(np.array([[-2.0], [0.5]])) == "logits"
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.2, 0.3, 0.6, 0.7])  # all above 0: thresholding at 0 would score the positive rate
    assert value("accuracy", "binary", probs, labels, "probs") == 1.0
    assert value("accuracy", "binary", probs, labels, "logits") == 0.5


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_update_binary_reads_the_output_kind_and_its_gate_can_trip(clicks, tmp_path, kind):
    from edgeopt.errors import GateError
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    common = dict(model=clicks / f"deepfm_{kind}.pt", arch=f"{ARCH}:deepfm", arch_kwargs={"probs": kind == "probs"},
                  inputs=[parse_input(s) for s in ctr_models.DEEPFM_INPUTS], data=clicks / "new.npz",
                  old_data=clicks / "old.npz", task="binary", progress=False)
    r = update(out=tmp_path / "out", method="lwf", epochs=2, **common)
    rep = r.report
    assert rep["output_kind"] == kind and rep["metric"] == "auc"
    assert rep["before"]["old"]["auc"] > 0.7  # a trained model, scored on the scale it outputs
    pos_rate = float(np.load(clicks / "old.npz")["labels"].mean())
    assert abs(rep["before"]["old"]["accuracy"] - max(pos_rate, 1 - pos_rate)) > 0.02
    # a large learning rate on the new rows only: the gate must be able to trip
    with pytest.raises(GateError, match="forgot too much"):
        update(out=tmp_path / "out2", method="finetune", lr=0.05, epochs=3, max_forgetting=0.001, **common)
    assert not (tmp_path / "out2").exists()

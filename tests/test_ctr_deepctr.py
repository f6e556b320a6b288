"""A real CTR ranker from DeepCTR-Torch (issue 30): its DeepFM takes one float tensor X whose columns
are the sparse features' ids (as floats, cast to long inside) next to the dense features, and ends in
a sigmoid [batch, 1]. Made-up float inputs are not ids (they break its embedding lookups), so
edgeopt's input check runs on the user's rows (--calib / --data). Over the Criteo sample's 26
categorical and 13 dense fields: export (ONNX equal to torch), --int8 gated on AUC, and update
(probabilities detected)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import criteo_fields, run_cli

pytest.importorskip("deepctr_torch", reason="deepctr-torch is not installed (pip install -e .[dev])")

ARCH = '''from deepctr_torch.inputs import DenseFeat, SparseFeat
from deepctr_torch.models import DeepFM


def deepfm(vocab, dense=13, embed_dim=4):
    columns = [SparseFeat(f"C{i + 1}", vocabulary_size=v, embedding_dim=embed_dim) for i, v in enumerate(vocab)]
    columns += [DenseFeat(f"I{i + 1}", 1) for i in range(dense)]
    return DeepFM(columns, columns, dnn_hidden_units=(32,), task="binary", device="cpu", seed=0)
'''


@pytest.fixture(scope="module")
def deepctr(tmp_path_factory):
    import importlib.util

    import torch

    folder = tmp_path_factory.mktemp("deepctr")
    cats, vocab, dense, labels = criteo_fields()
    x = np.stack([*cats, *dense], axis=1).astype("float32")  # DeepCTR's X: the 26 ids, then the 13 dense values
    np.savez(folder / "criteo.npz", X=x, labels=labels)
    (folder / "deepctr_arch.py").write_text(ARCH)
    spec = importlib.util.spec_from_file_location("deepctr_arch", folder / "deepctr_arch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.deepfm(vocab).eval()
    torch.save(model.state_dict(), folder / "deepctr.pt")
    args = ["--arch", f"{folder / 'deepctr_arch.py'}:deepfm", "--arch-kwargs", json.dumps({"vocab": vocab}),
            "--input", "X:batchx39:float32"]
    return folder, model, x, args


@pytest.mark.slow  # ~30 s; the fast run covers codes in a float tensor with tests/ctr_models.py's coded_ids
def test_deepctr_deepfm_exports_int8_and_updates_on_its_own_rows(deepctr, tmp_path):
    import onnxruntime as ort
    import torch

    folder, model, x, args = deepctr
    refused = run_cli("export", folder / "deepctr.pt", *args, "--to", "onnx", "-o", tmp_path / "refused")
    assert refused.returncode == 2 and "rejected the inputs" in refused.stderr  # made-up floats are not ids
    out = tmp_path / "out"
    r = run_cli("export", folder / "deepctr.pt", *args, "--to", "onnx", "-o", out, "--int8", "--calib",
                folder / "criteo.npz", "--no-speed-check", "--max-drop", "0.05", "--calib-size", "120",
                "--eval-size", "80")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["int8"]["metric"] == "auc" and all(a["verification"]["passed"] for a in m["artifacts"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:50])).numpy()
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"X": x[:50]})[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)

    r = run_cli("update", folder / "deepctr.pt", *args, "--data", folder / "criteo.npz", "--old-data",
                folder / "criteo.npz", "--epochs", "1", "-o", tmp_path / "up", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["task"] == "binary" and report["output_kind"] == "probs" and report["metric"] == "auc"

"""A real CTR ranker from torch-rechub (issue 30): its DeepFM takes one dict of named tensors (one
id per sparse feature, one float per dense feature) and ends in a sigmoid with a [batch] output.
Built over the Criteo sample's 26 categorical and 13 dense fields, it goes through export (ONNX
answers equal to torch; OpenVINO too), --int8 gated on AUC and update (probabilities detected) with the same
--input flags as any model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import criteo_fields, run_cli

pytest.importorskip("torch_rechub", reason="torch-rechub is not installed (pip install -e .[dev])")

ARCH = '''from torch_rechub.basic.features import DenseFeature, SparseFeature
from torch_rechub.models.ranking import DeepFM


def deepfm(vocab, dense=13, embed_dim=8):
    sparse = [SparseFeature(f"C{i + 1}", vocab_size=v, embed_dim=embed_dim) for i, v in enumerate(vocab)]
    dense_f = [DenseFeature(f"I{i + 1}") for i in range(dense)]
    return DeepFM(deep_features=dense_f + sparse, fm_features=sparse, mlp_params={"dims": [32], "dropout": 0.0})
'''


@pytest.fixture(scope="module")
def rechub(tmp_path_factory):
    import importlib.util

    import torch

    folder = tmp_path_factory.mktemp("rechub")
    cats, vocab, dense, labels = criteo_fields()
    feats = {f"C{i + 1}": c for i, c in enumerate(cats)} | {f"I{i + 1}": d for i, d in enumerate(dense)}
    feats["labels"] = labels
    np.savez(folder / "criteo.npz", **feats)
    (folder / "rechub_arch.py").write_text(ARCH)
    spec = importlib.util.spec_from_file_location("rechub_arch", folder / "rechub_arch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.deepfm(vocab).eval()
    torch.save(model.state_dict(), folder / "rechub.pt")
    args = ["--arch", f"{folder / 'rechub_arch.py'}:deepfm", "--arch-kwargs", json.dumps({"vocab": vocab})]
    args += [a for i in range(1, 27) for a in ("--input", f"C{i}:1:int64")]
    args += [a for i in range(1, 14) for a in ("--input", f"I{i}:1:float32")]
    return folder, model, feats, args


@pytest.mark.slow  # ~20 s: the fast run covers dict inputs with tests/ctr_models.py's DictRanker
def test_rechub_deepfm_exports_int8_and_updates(rechub, tmp_path):
    import onnxruntime as ort
    import torch

    folder, model, feats, args = rechub
    out = tmp_path / "out"
    r = run_cli("export", folder / "rechub.pt", *args, "-o", out, "--int8", "--calib",
                folder / "criteo.npz", "--no-speed-check", "--max-drop", "0.05", "--calib-size", "120",
                "--eval-size", "80")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["int8"]["metric"] == "auc" and m["outputs"][0]["shape"] == ["batch"]
    # OpenVINO folds the int64 Casts after the inputs into them: the IR still answers to C1..C26
    assert {a["path"] for a in m["artifacts"]} >= {"openvino/model.xml", "openvino/model.int8.xml"}
    assert all(a["verification"]["passed"] for a in m["artifacts"])
    feeds = {k: v[:50] for k, v in feats.items() if k != "labels"}
    with torch.no_grad():
        ref = model({k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)

    r = run_cli("update", folder / "rechub.pt", *args, "--data", folder / "criteo.npz", "--old-data",
                folder / "criteo.npz", "--task", "binary", "--epochs", "1", "-o", tmp_path / "up", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["output_kind"] == "probs" and report["metric"] == "auc"

"""The real thing: all-MiniLM-L6-v2 exported, packaged, signed, installed, health-checked, and served
by edgeopt.runtime.embed, against sentence-transformers' own encode."""

import numpy as np
import pytest

from tests.bundle_fixtures import keys  # noqa: F401
from tests.conftest import run_cli

TITLES = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt",
          "stainless steel 12 cup programmable coffee maker with thermal carafe", "kids waterproof winter boots",
          "organic green tea 100 bags"]


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow  # 40-100 s: a full MiniLM export; the tiny-model tests cover every path fast
@pytest.mark.parametrize("precision, flags, min_cos", [
    ("fp32", (), 0.9999),
    ("int8", ("--int8", "--no-speed-check"), 0.98),  # the INT8 gate's per-title floor is 0.98
])
def test_minilm_bundle_end_to_end(minilm_path, keys, tmp_path, precision, flags, min_cos):
    st = pytest.importorskip("sentence_transformers")
    r = run_cli("export", minilm_path, "--to", "onnx", *flags, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    r = run_cli("package", tmp_path / "out", "-o", tmp_path / "minilm.edgepkg", "--sign-key",
                keys["good"].private_key, "--version", "1.0.0")
    assert r.returncode == 0, r.stderr
    r = run_cli("install", tmp_path / "minilm.edgepkg", "--dest", tmp_path / "dest", "--public-key",
                keys["good"].public_key)
    assert r.returncode == 0, r.stderr
    from edgeopt.runtime import load

    [installed] = [p for p in (tmp_path / "dest").iterdir() if p.is_dir()]
    model = load(installed)
    assert model.cache.startswith("install-time") and model.runtime == "onnxruntime"
    assert model.artifact["precision"] == precision
    got = model.embed(TITLES)
    want = st.SentenceTransformer(str(minilm_path), device="cpu").encode(TITLES, convert_to_numpy=True)
    assert got.shape == want.shape == (len(TITLES), 384)
    assert _cos(got, want).min() > min_cos

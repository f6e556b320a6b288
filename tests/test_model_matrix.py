"""The model families users ship (tests/hf_families.py), exported and verified through the CLI as a
user runs it, and INT8 for each family. The fast run covers one of each kind (a text encoder whose
tokenizer emits an input the model lacks, a vision classifier, a recommender, a two-input ranker,
CTR rankers with fixed int64 fields and a dict-input one); the rest are `slow`."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "tests"))
from hf_families import FAMILIES, clip_calibration, image_folder  # noqa: E402

FAST = {"distilbert", "vit", "session-gru", "ranker", "deepfm", "dict-ranker"}
slow_unless_fast = [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in FAMILIES]


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("families")
    built = {}

    def get(name):
        if name not in built:
            built[name] = FAMILIES[name][0](root / name, minilm_path)
        return built[name]

    return get


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images") / "photos")


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("name", slow_unless_fast)
def test_export_verifies(family_dir, tmp_path, name):
    path, args = family_dir(name)
    out = tmp_path / "out"
    r = run_cli("export", path, *args, "-o", out)
    assert "Traceback" not in r.stderr
    if name == "efficientnet":
        # transformers' EfficientNet pools with a kernel wider than its feature map, which OpenVINO
        # refuses to convert: ONNX is written and verified, the IR is reported as not built (exit 1)
        assert r.returncode == 1, r.stderr
        m = _manifest(out)
        assert [a["path"] for a in m["artifacts"]] == ["model.onnx"]
        assert m["artifacts"][0]["verification"]["passed"]
        assert m["not_built"][0]["path"] == "openvino/model.xml" and "AveragePool" in m["not_built"][0]["error"]
        r = run_cli("export", path, *args, "--to", "onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    m = _manifest(out)
    assert m["artifacts"] and all(a["verification"]["passed"] for a in m["artifacts"])
    kind = FAMILIES[name][1]
    if kind == "images":
        assert [i["name"] for i in m["inputs"]] == ["pixel_values"]
        assert m["task"] == "classify" and m["preprocessing"]["class_names"] == ["bags", "shirts", "shoes"]
        assert m["preprocessing"]["image"]["size"] == [i for i in m["inputs"][0]["shape"][2:]]
    if name == "distilbert":  # a BERT tokenizer emits token_type_ids; DistilBERT's forward has none
        assert [i["name"] for i in m["inputs"]] == ["input_ids", "attention_mask"]
    if name == "clip":
        assert {i["name"] for i in m["inputs"]} == {"input_ids", "attention_mask", "pixel_values"}
        assert {"text_embeds", "image_embeds"} <= {o["name"] for o in m["outputs"]}


def _int8_args(name, path, family_dir, images, tmp_path):
    kind = FAMILIES[name][1]
    if kind == "text":
        return []  # the built-in product titles
    if kind == "images":
        return ["--calib", str(images)]
    if name == "clip":
        from edgeopt.models import load_model

        return ["--calib", str(clip_calibration(tmp_path / "clip.npz", load_model(path))), "--metric", "cosine"]
    return ["--calib", str(path.parent / "calib.npz")]


INT8_FAST = {"distilbert", "vit", "deepfm"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in INT8_FAST else pytest.mark.slow)
                                  for n in FAMILIES if n != "efficientnet"])
def test_int8_passes_its_gate(family_dir, images, tmp_path, name):
    """--int8 for each family, gated on its task's metric. Speed is not checked: these models are
    too small for INT8 to be faster (the speed check is tested with real models elsewhere)."""
    path, args = family_dir(name)
    out = tmp_path / "out"
    extra = _int8_args(name, path, family_dir, images, tmp_path)
    r = run_cli("export", path, *args, "-o", out, "--int8", "--no-speed-check", "--max-drop", "0.2", *extra,
                "--calib-size", "32", "--eval-size", "32")
    assert "Traceback" not in r.stderr
    assert r.returncode == 0, r.stderr
    m = _manifest(out)
    int8 = [a for a in m["artifacts"] if a["precision"] == "int8"]
    assert int8 and all(a["quality"]["metric"] == m["int8"]["metric"] for a in int8)
    if FAMILIES[name][1] == "images":  # labelled class folders: top-1 against the labels
        assert m["int8"]["metric"] == "top1"
    if name in ("deepfm", "dcn", "dict-ranker"):  # one click column, 0/1 labels: AUC, never top-1
        assert m["int8"]["metric"] == "auc" and m["int8"]["bytes"]


def test_efficientnet_int8_on_onnx(family_dir, images, tmp_path):
    pytest.importorskip("transformers")
    path, args = family_dir("efficientnet")
    r = run_cli("export", path, "--to", "onnx", "-o", tmp_path / "out", "--int8", "--no-speed-check",
                "--max-drop", "0.2", "--calib", images, "--calib-size", "32", "--eval-size", "32")
    assert r.returncode == 0, r.stderr


test_efficientnet_int8_on_onnx = pytest.mark.slow(test_efficientnet_int8_on_onnx)


def test_vision_calibration_uses_the_models_preprocessing(family_dir, images):
    """The image folder is read with preprocessor_config.json's size, crop and mean / std, and its
    class folders get the model's own label ids (id2label), not their sorted order."""
    import numpy as np
    from PIL import Image

    from edgeopt.data import load_data
    from edgeopt.models import load_model

    path, _ = family_dir("convnext")  # shortest edge 32 / crop_pct 0.875, ImageNet mean / std
    model = load_model(path)
    prep = model.metadata["image"]
    assert prep["size"] == [32, 32] and prep["shortest_edge"] == round(32 / 0.875) and prep["resample"] == 3
    ds = load_data(images, io=model.io, image=prep, class_names=["shoes", "bags", "shirts"])
    x = ds.samples[0]["pixel_values"]
    assert x.shape == (1, 3, 32, 32)
    first = sorted((images / "bags").iterdir())[0]
    with Image.open(first) as im:  # 48x40 -> short side 37 -> 44x37 -> centre crop 32x32
        im = im.convert("RGB").resize((44, 37), Image.BICUBIC)
        left, top = (44 - 32) // 2, (37 - 32) // 2
        ref = np.asarray(im.crop((left, top, left + 32, top + 32)), np.float32) / 255
    ref = ((ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], ref, atol=1e-5)
    assert list(ds.labels[:1]) == [1] and set(ds.labels) == {0, 1, 2}  # "bags" is id 1 in the given names

"""Export of real (tiny) models in every checkpoint form, verified against PyTorch."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH, run_cli

from edgeopt.export.pipeline import ExportOptions, export_model
from edgeopt.models import load_model
from edgeopt.backends import get_runtime
from edgeopt.spec import parse_input

IMAGE = [parse_input("x:1x3x32x32:float32")]


def _independent_check(out, net, batch=5):
    """Run the artifacts ourselves on a fresh batch size and compare with eager PyTorch."""
    x = np.random.default_rng(42).standard_normal((batch, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    onnx_out = get_runtime("onnxruntime").load(str(out / "model.onnx")).run({"x": x})
    ov_out = get_runtime("openvino").load(str(out / "openvino" / "model.xml")).run({"x": x})
    (onnx_y,), (ov_y,) = onnx_out.values(), ov_out.values()
    return float(np.abs(onnx_y - ref).max()), float(np.abs(ov_y - ref).max())


def _reference_net(tiny):
    import sys

    sys.path.insert(0, str(tiny["resnet_pth"].parents[0]))
    from tests.tiny_models import resnet_tiny

    net = resnet_tiny().eval()
    net.load_state_dict(torch.load(tiny["resnet_pth"], weights_only=True))
    return net


@pytest.mark.parametrize("form", ["resnet_pth", "resnet_st", "resnet_ts", "resnet_pt2", "wrapped_pth"])
def test_resnet_every_form_matches_pytorch(tiny, tmp_path, form):
    arch = TINY_ARCH if form in ("resnet_pth", "resnet_st", "wrapped_pth") else None
    model = load_model(tiny[form], arch=arch, inputs=None if form == "resnet_pt2" else IMAGE)
    out = tmp_path / "out"
    result = export_model(model, out, ExportOptions())
    assert result.passed
    manifest = json.loads((out / "manifest.json").read_text())
    by_path = {a["path"]: a for a in manifest["artifacts"]}
    assert by_path["model.onnx"]["verification"]["max_abs_diff"] <= 1e-4
    assert by_path["openvino/model.xml"]["verification"]["max_abs_diff"] <= 1e-3
    assert manifest["inputs"][0]["shape"][0] == "batch"
    assert manifest["outputs"][0]["shape"] == ["batch", 10]
    onnx_diff, ov_diff = _independent_check(out, _reference_net(tiny))
    assert onnx_diff <= 1e-4 and ov_diff <= 1e-3


def test_keyword_only_forward_with_dict_output(tiny, tmp_path):
    arch = TINY_ARCH.replace("resnet_tiny", "kwonly")
    model = load_model(tiny["kwonly_pth"], arch=arch,
                       inputs=[parse_input("input_ids:1x7:int64"), parse_input("attention_mask:1x7:int64")])
    assert model.io.output_names == ["logits", "pooled"]
    result = export_model(model, tmp_path / "out", ExportOptions(targets=("onnx",)))
    assert result.passed
    outputs = {o["name"]: o["shape"] for o in result.manifest.to_json()["outputs"]}
    assert outputs == {"logits": ["batch", 3], "pooled": ["batch", 8]}


def test_trust_pickle_loads_a_whole_module(tiny, tmp_path):
    model = load_model(tiny["resnet_whole"], trust_pickle=True, inputs=IMAGE)
    assert model.family == "pickle"
    assert export_model(model, tmp_path / "out", ExportOptions(targets=("onnx",))).passed


def test_fp16_openvino_and_json_output(tiny, tmp_path):
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--fp16", "--json")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    precisions = {a["path"]: a["precision"] for a in manifest["artifacts"]}
    assert precisions["openvino/model.fp16.xml"] == "fp16"
    fp16_bin = (out / "openvino" / "model.fp16.bin").stat().st_size
    fp32_bin = (out / "openvino" / "model.bin").stat().st_size
    assert fp16_bin < 0.6 * fp32_bin  # weights really are half size
    assert manifest == json.loads((out / "manifest.json").read_text())


def test_export_replaces_an_earlier_output_but_not_a_foreign_folder(tiny, tmp_path):
    out = tmp_path / "o"
    model = load_model(tiny["resnet_pt2"])
    export_model(model, out, ExportOptions(targets=("onnx",)))
    export_model(model, out, ExportOptions(targets=("onnx",)))
    assert (out / "manifest.json").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = run_cli("export", tiny["resnet_pt2"], "-o", foreign, "--to", "onnx")
    assert r.returncode == 2 and (foreign / "notes.txt").read_text() == "keep me"


def test_parity_break_exits_1_and_marks_the_artifact(tiny, tmp_path):
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx", "--atol", "0", "--rtol", "0")
    assert r.returncode == 1, r.stderr
    assert "does not match the source" in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    v = manifest["artifacts"][0]["verification"]
    assert v["passed"] is False and v["max_abs_diff"] > 0 and v["atol"] == 0

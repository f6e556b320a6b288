"""`export --to mobile`: ORT-format artifacts, their operator config, the NNAPI / CoreML report,
`package --target mobile` and the device runtime / bench loading `.ort` files (issue 33)."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import tiny_export  # noqa: F401
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def mobile_export(tiny, tmp_path_factory):
    """The tiny residual CNN (dynamic batch) exported with --to onnx,mobile (seconds)."""
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("mobile") / "cnn"
    result = export_model(load_model(tiny["resnet_pt2"]), out, ExportOptions(targets=("onnx", "mobile")))
    assert result.passed, result.failure
    return out


def _records(out: Path) -> dict:
    return {a["path"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}


def test_ort_artifacts_verified_with_config_and_partitions(mobile_export):
    arts = _records(mobile_export)
    assert set(arts) == {"model.onnx", "mobile/model.ort", "mobile/model.static.ort"}
    for path in ("mobile/model.ort", "mobile/model.static.ort"):
        rec = arts[path]
        assert rec["format"] == "ort" and rec["source"] == "model.onnx"
        assert rec["verification"]["passed"] and rec["verification"]["vs"] == "source model"
        assert rec["verification"]["max_abs_diff"] < 1e-4
        assert rec["operator_config"] == "mobile/required_operators.config"
        assert set(rec["partitions"]) == {"nnapi", "coreml_mlprogram", "coreml_neuralnetwork", "recommendation"}
    assert arts["mobile/model.static.ort"]["static_shapes"] == {"x": [1, 3, 32, 32]}
    # ORT's own checker: with a dynamic batch every node falls back for its dynamic input shape;
    # fixed, NNAPI takes the whole graph in one partition
    dynamic, static = (arts[p]["partitions"]["nnapi"] for p in ("mobile/model.ort", "mobile/model.static.ort"))
    assert dynamic["supported_nodes"] == 0 and dynamic["fallback"]["dynamic_shape"] == dynamic["nodes"] > 0
    assert static["partitions"] == 1 and static["supported_nodes"] == static["nodes"]
    assert static["suitability"] == "YES"
    config = (mobile_export / "mobile/required_operators.config").read_text()
    assert "/tmp" not in config and "mobile/model.ort" in config
    ops = {op for line in config.splitlines() if not line.startswith("#")
           for op in line.split(";")[2].split(",")}
    assert {"Gemm", "FusedConv"} <= ops  # the Linear head; Conv + ReLU fused by the ARM-target optimizations


def test_ort_file_runs_in_plain_onnxruntime(mobile_export):
    """An ORT-format file that onnxruntime's own API opens and that answers like model.onnx."""
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    onnx_out = ort.InferenceSession(str(mobile_export / "model.onnx")).run(None, {"x": x})[0]
    ort_out = ort.InferenceSession(str(mobile_export / "mobile/model.ort")).run(None, {"x": x})[0]
    np.testing.assert_allclose(ort_out, onnx_out, atol=1e-4, rtol=1e-4)
    static = ort.InferenceSession(str(mobile_export / "mobile/model.static.ort"))
    assert static.get_inputs()[0].shape == [1, 3, 32, 32]
    np.testing.assert_allclose(static.run(None, {"x": x[:1]})[0], onnx_out[:1], atol=1e-4, rtol=1e-4)


def test_mobile_shapes_flag(tiny, tmp_path):
    r = run_cli("export", tiny["resnet_pt2"], "--to", "onnx,mobile", "--mobile-shapes", "batch=2",
                "-o", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr
    arts = {a["path"]: a for a in json.loads(r.stdout)["artifacts"]}
    assert arts["mobile/model.static.ort"]["static_shapes"] == {"x": [2, 3, 32, 32]}


@pytest.mark.parametrize("args, says", [
    (["--to", "onnx,mobile", "--mobile-shapes", "sequence=8"], "dynamic axes are "),
    (["--to", "onnx,mobile", "--mobile-shapes", "batch"], "AXIS=SIZE"),
    (["--to", "onnx", "--mobile-shapes", "batch=1"], "applies to --to mobile"),
])
def test_bad_mobile_shapes(tiny, tmp_path, args, says):
    r = run_cli("export", tiny["resnet_pt2"], *args, "-o", tmp_path / "out")
    assert r.returncode == 2 and says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_unconvertible_op_named(tmp_path):
    """A graph ORT has no kernel for: one line naming the op, nothing written."""
    import onnx
    from onnx import TensorProto, helper

    from edgeopt.errors import UsageError
    from edgeopt.export.mobile import convert

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]),
                               helper.make_node("Frobnicate", ["h"], ["y"], domain="com.example")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), tmp_path / "m.onnx")
    (tmp_path / "mobile").mkdir()
    with pytest.raises(UsageError, match=r"cannot convert m.onnx: op com.example:Frobnicate has no ONNX Runtime kernel"):
        convert(tmp_path / "m.onnx", tmp_path / "mobile" / "m.ort")
    assert list((tmp_path / "mobile").iterdir()) == []


def test_package_target_mobile_ships_ort_and_config(mobile_export, tmp_path):
    from edgeopt.bundle.build import package
    from edgeopt.runtime import load

    r = package(out=mobile_export, bundle=tmp_path / "m.edgepkg", target="mobile")
    assert r.artifacts == ["mobile/model.ort"]
    assert any("model.static.ort" in s for s in r.skipped)
    with tarfile.open(r.bundle) as tar:
        names = set(tar.getnames())
    assert {"mobile/model.ort", "mobile/required_operators.config"} <= names and "model.onnx" not in names
    model = load(r.bundle)  # the device runtime on the .ort file
    assert model.artifact["path"] == "mobile/model.ort" and model.runtime == "onnxruntime"
    x = np.ones((2, 3, 32, 32), np.float32)
    ref = load(mobile_export, artifact="model.onnx", use_cache=False)
    np.testing.assert_allclose(model.run({"x": x})["output"], ref.run({"x": x})["output"], atol=1e-4)
    plain = package(out=mobile_export, bundle=tmp_path / "p.edgepkg")  # the default leaves .ort out
    assert plain.artifacts == ["model.onnx"]


def test_install_mobile_bundle_health_checks_ort(mobile_export, tmp_path):
    from edgeopt.bundle.build import package

    bundle = package(out=mobile_export, bundle=tmp_path / "m.edgepkg", target="mobile").bundle
    r = run_cli("install", bundle, "--dest", tmp_path / "dest", "--allow-unsigned")
    assert r.returncode == 0, r.stderr
    assert "with mobile/model.ort" in r.stdout


def test_package_target_mobile_without_ort(tiny_export, tmp_path):
    r = run_cli("package", tiny_export, "-o", tmp_path / "b.edgepkg", "--target", "mobile")
    assert r.returncode == 2 and "no .ort artifact; export with --to onnx,mobile" in r.stderr
    assert not (tmp_path / "b.edgepkg").exists()


def test_bench_expands_ort(mobile_export, tmp_path):
    from edgeopt.bench.cases import expand

    cases = expand(mobile_export / "mobile" / "model.ort", runtimes=None, workdir=tmp_path)
    assert [(c.artifact, c.format, c.runtime) for c in cases] == [("mobile/model.ort", "ort", "onnxruntime")]
    folder = {c.artifact for c in expand(mobile_export, runtimes=["onnxruntime"], workdir=tmp_path)}
    assert folder == {"model.onnx", "mobile/model.ort", "mobile/model.static.ort"}


"""TensorRT engines on a real GPU (run in Dockerfile.gpu; skipped without tensorrt and a GPU)."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_export(tiny, tmp_path_factory):
    pytest.importorskip("tensorrt")
    from edgeopt.backends.tensorrt import nvidia_gpus

    if not nvidia_gpus():
        pytest.skip("no NVIDIA GPU")
    d = tmp_path_factory.mktemp("trt")
    np.savez(d / "calib.npz", x=np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype("float32"))
    r = run_cli("export", tiny["resnet_pt2"], "-o", d / "out", "--to", "onnx,tensorrt", "--int8",
                "--int8-mode", "static", "--calib", d / "calib.npz", "--metric", "cosine", "--max-drop", "0.01",
                "--json", "--no-speed-check")
    assert r.returncode == 0, r.stderr
    return d / "out", json.loads(r.stdout)


def test_int8_and_fp16_engines_are_built_and_verified(gpu_export):
    out, manifest = gpu_export
    engines = [a for a in manifest["artifacts"] if a["format"] == "tensorrt"]
    assert {a["precision"] for a in engines} == {"int8", "fp16"}
    for a in engines:
        assert (out / a["path"]).is_file() and a["path"].endswith(".plan") and "-trt" in a["path"]
        assert a["verification"]["cosine_min"] > 0.99, a["verification"]
    assert (out / "tensorrt" / "timing.cache").is_file()


def test_engine_runs_through_the_runtime_interface(gpu_export):
    from edgeopt.backends import get_runtime

    out, manifest = gpu_export
    plan = next(a for a in manifest["artifacts"] if a["format"] == "tensorrt")
    session = get_runtime("tensorrt").load(str(out / plan["path"]))
    y = session.run({"x": np.zeros((4, 3, 32, 32), np.float32)})
    assert next(iter(y.values())).shape == (4, 10)

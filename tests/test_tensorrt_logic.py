"""TensorRT logic that needs no GPU: QDQ readiness, engine names, optimization profiles."""

import numpy as np
import pytest

from edgeopt.export.tensorrt import engine_filename, profile_from_data, tensorrt_readiness
from edgeopt.spec import TensorSpec


def test_engine_filename_carries_arch_and_version():
    assert engine_filename("int8", "8.9", "10.13.0.35") == "model.int8.sm89-trt10.13.plan"


def test_profile_spans_the_data():
    inputs = (TensorSpec("input_ids", "int64", ("batch", "sequence")),)
    samples = [{"input_ids": np.zeros((1, n), np.int64)} for n in (5, 9, 12, 30)]
    lo, opt, hi = profile_from_data(inputs, samples, max_batch=16)["input_ids"]
    assert lo == (1, 5) and hi == (16, 30) and opt[0] == 1 and 9 <= opt[1] <= 12


def test_static_dims_stay_fixed():
    inputs = (TensorSpec("x", "float32", ("batch", 3, 32, 32)),)
    assert profile_from_data(inputs, [])["x"] == ((1, 3, 32, 32), (1, 3, 32, 32), (32, 3, 32, 32))


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    from tests.test_export_models import IMAGE

    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("trt") / "o"
    export_model(load_model(tiny["resnet_pt2"], inputs=None), out, ExportOptions(targets=("onnx",)))
    return out / "model.onnx", IMAGE


def _calib(n=16):
    rng = np.random.default_rng(0)
    from edgeopt.data.dataset import Dataset

    return Dataset([{"x": rng.standard_normal((1, 3, 32, 32)).astype("float32")} for _ in range(n)], source="rand")


def test_edgeopt_qdq_is_tensorrt_ready(tiny_onnx, tmp_path):
    from edgeopt.optimize.quantize.ort import quantize_static_qdq

    qdq = quantize_static_qdq(tiny_onnx[0], tmp_path / "q.onnx", _calib())
    report = tensorrt_readiness(qdq)
    assert report["ok"], report["issues"]
    assert report["qdq_nodes"] > 0


def test_stock_asymmetric_qdq_is_flagged(tiny_onnx, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_static

    from edgeopt.optimize.quantize.ort import _Reader

    quantize_static(str(tiny_onnx[0]), str(tmp_path / "stock.onnx"), _Reader(_calib(), ["x"]),
                    activation_type=QuantType.QUInt8, per_channel=True)
    report = tensorrt_readiness(tmp_path / "stock.onnx")
    assert not report["ok"] and any("zero point" in i for i in report["issues"])


def test_int8_source_for_tensorrt_is_always_qdq(tiny_onnx, tmp_path):
    """TensorRT parses Q/DQ, not dynamic MatMulInteger graphs: the builder takes model.int8.onnx only
    when it is QDQ, else the static model kept beside it, else nothing."""
    from onnxruntime.quantization import quantize_dynamic

    from edgeopt.export.tensorrt import int8_qdq_source
    from edgeopt.optimize.quantize.ort import quantize_static_qdq

    stage = tmp_path / "stage"
    stage.mkdir()
    quantize_dynamic(str(tiny_onnx[0]), str(stage / "model.int8.onnx"))
    assert int8_qdq_source(stage) is None
    quantize_static_qdq(tiny_onnx[0], stage / "model.int8.qdq.onnx", _calib())
    assert int8_qdq_source(stage) == stage / "model.int8.qdq.onnx"
    (stage / "model.int8.qdq.onnx").unlink()
    quantize_static_qdq(tiny_onnx[0], stage / "model.int8.onnx", _calib())
    assert int8_qdq_source(stage) == stage / "model.int8.onnx"

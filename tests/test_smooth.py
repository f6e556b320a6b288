"""SmoothQuant channel scaling (edgeopt.optimize.quantize.smooth) on tiny graphs whose input has a
few outlier *channels* on every token: the case per-token scales alone handle badly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeopt.data.dataset import Dataset
from edgeopt.optimize.quantize.per_token import per_token_file
from edgeopt.optimize.quantize.smooth import layernorm_fed, scales, smooth_file, smoothable

H = 16


def _x(rng, n=1) -> np.ndarray:
    x = rng.normal(0, 1, (n, 6, H)).astype(np.float32)
    x[..., [3, 11]] *= 100.0  # outlier channels on every token, like BERT LayerNorm outputs
    return x


def _save(nodes, inits, path, outputs=("y",), width=8, domain=False):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", H])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["b", "s", width]) for o in outputs],
                              inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path, x) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _calib(rng) -> Dataset:
    return Dataset([{"x": _x(rng)} for _ in range(8)], source="t")


def test_smoothing_keeps_fp32_outputs_and_helps_per_token(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (H, 8)).astype(np.float32), "W")
    _save([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], [w], tmp_path / "fp32.onnx")
    x = _x(rng, 4)
    ref = _run(tmp_path / "fp32.onnx", x)[0]

    assert smooth_file(tmp_path / "fp32.onnx", tmp_path / "smooth.onnx", _calib(rng)) == ["fc"]
    model = onnx.load(str(tmp_path / "smooth.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Mul", "MatMul"]
    np.testing.assert_allclose(_run(tmp_path / "smooth.onnx", x)[0], ref, rtol=1e-4, atol=1e-4)

    plain = per_token_file(tmp_path / "fp32.onnx", tmp_path / "pt.onnx", ["fc"])
    smoothed = per_token_file(tmp_path / "smooth.onnx", tmp_path / "spt.onnx", ["fc"])
    err_plain = np.abs(_run(plain, x)[0] - ref).mean()
    err_smooth = np.abs(_run(smoothed, x)[0] - ref).mean()
    assert err_smooth < 0.6 * err_plain, (err_smooth, err_plain)  # 0.40x here


def test_shared_weight_and_fused_attention(tmp_path):
    """Two MatMuls share one weight (each gets its own scaled copy), and onnxruntime's fused
    Attention has its input scaled like a MatMul's: outputs unchanged in FP32."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (H, H)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.3, (H, 3 * H)).astype(np.float32), "Wqkv"),
             numpy_helper.from_array(rng.normal(0, 0.1, 3 * H).astype(np.float32), "bqkv")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"], name="fc_a"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W"], ["y"], name="fc_b"),
             helper.make_node("Attention", ["x", "Wqkv", "bqkv"], ["att"], name="attn", num_heads=2,
                              domain="com.microsoft")]
    _save(nodes, inits, tmp_path / "fp32.onnx", outputs=("y", "att"), width=H, domain=True)
    assert set(smoothable(onnx.load(str(tmp_path / "fp32.onnx")))) == {"fc_a", "fc_b", "attn"}
    x = _x(rng, 3)
    ref = _run(tmp_path / "fp32.onnx", x)
    smooth_file(tmp_path / "fp32.onnx", tmp_path / "smooth.onnx", _calib(rng))
    for got, want in zip(_run(tmp_path / "smooth.onnx", x), ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    weights = {i.name for i in onnx.load(str(tmp_path / "smooth.onnx")).graph.initializer}
    assert "W" not in weights and {"fc_a/smooth_W", "fc_b/smooth_W", "attn/smooth_W"} <= weights


def test_only_layernorm_fed_nodes_are_smoothed_in_front_of_the_dynamic_search(tmp_path):
    """The dynamic search smooths the nodes that read a LayerNorm output (outlier channels), not the
    one behind a Relu; the others keep their weights, and the FP32 outputs stay the same."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (H, H)).astype(np.float32), n) for n in ("W1", "W2")]
    inits += [numpy_helper.from_array(np.abs(rng.normal(1, 0.5, H)).astype(np.float32), "g"),
              numpy_helper.from_array(np.zeros(H, np.float32), "b")]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], name="ln", axis=-1),
             helper.make_node("MatMul", ["ln", "W1"], ["a"], name="fc_ln"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc_relu")]
    _save(nodes, inits, tmp_path / "fp32.onnx", width=H)
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    assert set(smoothable(model)) == {"fc_ln", "fc_relu"} and layernorm_fed(model) == ["fc_ln"]
    x = _x(rng, 3)
    assert smooth_file(tmp_path / "fp32.onnx", tmp_path / "s.onnx", _calib(rng), layernorm_only=True) == ["fc_ln"]
    smoothed = onnx.load(str(tmp_path / "s.onnx"))
    assert [n.name for n in smoothed.graph.node if n.op_type == "Mul"] == ["fc_ln/smooth_Mul"]
    assert "W2" in {i.name for i in smoothed.graph.initializer}
    np.testing.assert_allclose(_run(tmp_path / "s.onnx", x)[0], _run(tmp_path / "fp32.onnx", x)[0],
                               rtol=1e-4, atol=1e-4)
    # no LayerNorm in front of anything: nothing smoothed, nothing written
    _save([helper.make_node("MatMul", ["x", "W1"], ["y"], name="fc")], inits[:1], tmp_path / "plain.onnx", width=H)
    assert smooth_file(tmp_path / "plain.onnx", tmp_path / "none.onnx", _calib(rng), layernorm_only=True) == []
    assert not (tmp_path / "none.onnx").exists()


def test_scales_are_finite_for_dead_channels():
    x_absmax = np.array([0.0, 4.0, 1.0], np.float32)
    w = np.array([[1.0, 2.0], [0.5, 0.5], [0.0, 0.0]], np.float32)
    s = scales(x_absmax, w, alpha=0.5)
    assert s[0] == 1.0 and s[2] == 1.0 and np.isfinite(s).all()
    assert s[1] == np.float32(np.sqrt(4.0) / np.sqrt(0.5))


def test_channel_maxima_are_the_same_with_samples_of_one_length_together(tmp_path):
    """Calibration samples of one length run together; a model with a fixed batch of 1 runs them
    one by one. Either way, the maxima are those of the samples taken one at a time."""
    from edgeopt.optimize.quantize.smooth import channel_absmax

    rng = np.random.default_rng(3)
    samples = []
    for n in (4, 6, 4, 5, 6, 6, 4):
        x = rng.normal(0, 1, (1, n, H)).astype(np.float32)
        x[..., 7] *= 50.0
        samples.append({"x": x})
    calib = Dataset(samples, source="t", kind="text")
    groups = list(calib.same_shape_batches(limit=2))
    assert sorted(i for chunk, _ in groups for i in chunk) == list(range(len(samples)))
    assert all(len(chunk) <= 2 and f["x"].shape[0] == len(chunk) for chunk, f in groups)
    want = np.abs(np.concatenate([s["x"].reshape(-1, H) for s in samples])).max(axis=0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (H, 8)).astype(np.float32), "W")
    for batch in ("b", 1):
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, "s", H])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, "s", 8])], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / f"m{batch}.onnx"))
        got = channel_absmax(tmp_path / f"m{batch}.onnx", calib, ["x"])
        np.testing.assert_array_equal(got["x"], want)

"""Per-token dynamic INT8 rewrite (edgeopt.optimize.quantize.per_token) on a tiny MatMul+Add graph
whose input has one outlier row, the case per-tensor dynamic quantization handles badly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.optimize.quantize.per_token import per_token_file, per_token_matmuls

OPS = {
    "dqmm": ["Abs", "ReduceMax", "Max", "Div", "DynamicQuantizeMatMul", "Mul", "Add"],
    "integer": ["Abs", "ReduceMax", "Div", "Max", "Div", "Round", "Add", "Clip", "Cast", "MatMulInteger",
                "Cast", "Mul", "Mul", "Add"],
}


def _model(opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (16, 8)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["mm"], name="fc/MatMul"),
         helper.make_node("Add", ["mm", "b"], ["y"], name="fc/Add")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _x() -> np.ndarray:
    x = np.random.default_rng(1).normal(0, 1, (2, 5, 16)).astype(np.float32)
    x[0, 0] *= 40.0  # one outlier token, like MiniLM's [CLS] after GELU
    return x


def _err_normal_tokens(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean abs error over the non-outlier tokens: where one per-tensor scale loses resolution."""
    err = np.abs(out - ref)
    err[0, 0] = np.nan
    return float(np.nanmean(err))


def _run(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("kernel", ["dqmm", "integer"])
@pytest.mark.parametrize("opset", [17, 18])
def test_per_token_beats_per_tensor(tmp_path, kernel, opset):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    x, model = _x(), _model(opset)
    onnx.save(model, tmp_path / "fp32.onnx")
    ref = _run(model, x)
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)
    err_tensor = _err_normal_tokens(_run(str(tmp_path / "dyn.onnx"), x), ref)

    assert per_token_matmuls(model, ["fc/MatMul"], kernel=kernel) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == OPS[kernel]
    assert {i.name for i in model.graph.initializer}.isdisjoint({"W"})  # FP32 weight dropped
    out = _run(model, x)
    err_token = _err_normal_tokens(out, ref)  # ~0.07x per-tensor's here
    assert err_token < 0.25 * err_tensor, (err_token, err_tensor)
    np.testing.assert_allclose(out, ref, atol=0.05 * np.abs(ref).max())


def test_on_quantize_dynamic_graph_and_file(tmp_path):
    """Intended use: stock dynamic INT8 with the sensitive MatMul excluded, then rewrite it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = _model()
    # a second MatMul that stock dynamic INT8 quantizes, and one whose B is not a constant
    model.graph.node.extend([
        helper.make_node("MatMul", ["y", "W2"], ["z"], name="fc2/MatMul"),
        helper.make_node("Transpose", ["y"], ["y_t"], perm=[0, 2, 1], name="t"),
        helper.make_node("MatMul", ["y", "y_t"], ["g"], name="gram/MatMul"),
    ])
    model.graph.initializer.append(numpy_helper.from_array(
        np.random.default_rng(2).normal(0, 0.3, (8, 4)).astype(np.float32), "W2"))
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("g", TensorProto.FLOAT, None)])
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8,
                     nodes_to_exclude=["fc/MatMul"])
    dyn = onnx.load(tmp_path / "dyn.onnx")
    # already-quantized, non-constant-B and unknown names are left alone
    assert per_token_matmuls(dyn, ["fc2/MatMul", "gram/MatMul", "nope"]) == 0
    dst = per_token_file(tmp_path / "dyn.onnx", tmp_path / "out" / "pt.onnx", ["fc/MatMul"])
    ops = [n.op_type for n in onnx.load(dst).graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 1 and "MatMulInteger" in ops  # ours + stock fc2
    assert ops.count("MatMul") == 1  # gram stays FP32
    x = _x()
    got, ref = (ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(["z"], {"x": x})[0]
                for f in (dst, tmp_path / "fp32.onnx"))
    # 6 %: the stock per-tensor fc2 saturates a little in onnxruntime's U8S8 kernel on AVX2 without
    # VNNI (5.1 % there; our per-token node uses 7-bit weights, which cannot)
    np.testing.assert_allclose(got, ref, atol=0.06 * np.abs(ref).max())


def test_bad_kernel():
    with pytest.raises(ValueError):
        per_token_matmuls(_model(), ["fc/MatMul"], kernel="int4")


def _two_branch_model(path) -> None:
    """Two MatMuls on two inputs: 'a' is well behaved, 'b' carries one outlier token."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 8)).astype(np.float32), n) for n in ("Wa", "Wb")]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "Wa"], ["ya"], name="mm_a"),
         helper.make_node("MatMul", ["b", "Wb"], ["yb"], name="mm_b"),
         helper.make_node("Add", ["ya", "yb"], ["y"], name="sum")],
        "two", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "seq", 16]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_dynamic_sensitivity_ranks_the_outlier_input_first(tmp_path):
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize.ort import _dynamic_roundtrip, dynamic_sensitivity

    _two_branch_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(4):
        b = rng.normal(0, 1, (1, 5, 16)).astype(np.float32)
        b[0, 0] *= 40.0
        samples.append({"a": rng.normal(0, 1, (1, 5, 16)).astype(np.float32), "b": b})
    assert dynamic_sensitivity(tmp_path / "two.onnx", Dataset(samples, source="t"), ["mm_a", "mm_b"]) == \
        ["mm_b", "mm_a"]
    x = _x()
    back = _dynamic_roundtrip(x)
    scale = (x.max() - min(x.min(), 0)) / 255
    assert np.abs(back - x).max() <= scale / 2 + 1e-6
    assert _dynamic_roundtrip(np.zeros(3, np.float32)).tolist() == [0, 0, 0]


def _three_matmul_model(path) -> None:
    """q / k share their input (onnxruntime's quantizer gives them one DynamicQuantizeLinear), v
    reads another tensor, and a Gemm head (a weight node that is not a MatMul) closes the graph."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), n) for n in ("Wq", "Wk", "Wv")]
    inits += [numpy_helper.from_array(rng.normal(0, 0.3, (16, 4)).astype(np.float32), "Wh")]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q/MatMul"),
         helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k/MatMul"),
         helper.make_node("Add", ["q", "k"], ["qk"], name="qk"),
         helper.make_node("Relu", ["qk"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "Wv"], ["v"], name="v/MatMul"),
         helper.make_node("Gemm", ["v", "Wh"], ["y"], name="head/Gemm")],
        "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("nodes, quantize_linear", [(["q/MatMul"], 3), (["v/MatMul"], 2),
                                                    (["q/MatMul", "k/MatMul", "v/MatMul"], 1)])
def test_float_matmuls_undoes_the_quantizer(tmp_path, nodes, quantize_linear):
    """Taking nodes out of the all-INT8 model gives what excluding them from the quantizer gives:
    the same ops, the same outputs, bit for bit (per token afterwards, too)."""
    from edgeopt.optimize.quantize.ort import DynamicVariants, quantize_dynamic_int8
    from edgeopt.optimize.quantize.per_token import float_matmuls

    _three_matmul_model(tmp_path / "fp32.onnx")
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "all.onnx")
    model, fp32 = onnx.load(tmp_path / "all.onnx"), onnx.load(tmp_path / "fp32.onnx")
    assert sorted(float_matmuls(model, fp32, nodes + ["head/Gemm", "nope"])) == sorted(nodes)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMul") == len(nodes) and ops.count("MatMulInteger") == 4 - len(nodes)  # + the head
    # x's DynamicQuantizeLinear, shared by q and k, stays while k still reads it
    assert ops.count("DynamicQuantizeLinear") == quantize_linear
    x = np.random.default_rng(5).normal(0, 1, (5, 16)).astype(np.float32)
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "excluded.onnx", per_token=nodes)
    variant = DynamicVariants(tmp_path / "fp32.onnx", tmp_path / "base.onnx")(nodes, tmp_path / "variant.onnx")
    want = _run(str(tmp_path / "excluded.onnx"), x)
    np.testing.assert_array_equal(_run(str(variant), x), want)
    per_token_matmuls(model, nodes)
    np.testing.assert_array_equal(_run(model, x), want)
    assert sorted(n.op_type for n in onnx.load(variant).graph.node) == \
        sorted(n.op_type for n in onnx.load(tmp_path / "excluded.onnx").graph.node)


def test_dynamic_variants_take_the_slow_way_for_other_nodes(tmp_path, monkeypatch):
    """A weight node that is not a MatMul (the Gemm head) cannot be taken out of the quantized model:
    that variant is quantized again with the node excluded, as before the variants existed."""
    from edgeopt.optimize.quantize import ort as qort

    _three_matmul_model(tmp_path / "fp32.onnx")
    variants = qort.DynamicVariants(tmp_path / "fp32.onnx", tmp_path / "base.onnx")
    calls = []
    real = qort.quantize_dynamic_int8
    monkeypatch.setattr(qort, "quantize_dynamic_int8", lambda *a, **k: calls.append(k) or real(*a, **k))
    variants(["v/MatMul"], tmp_path / "a.onnx")
    variants([], tmp_path / "b.onnx")
    assert calls == []
    variants(["v/MatMul", "head/Gemm"], tmp_path / "c.onnx")
    assert calls == [{"per_token": ["v/MatMul", "head/Gemm"]}]
    assert [n.op_type for n in onnx.load(tmp_path / "c.onnx").graph.node].count("DynamicQuantizeMatMul") == 1

"""A plain Hugging Face folder (config.json, no modules.json): a small BERT built from its config,
saved with save_pretrained, exported by keyword with its head's outputs named."""

import json

import pytest

from edgeopt.export.pipeline import ExportOptions, export_model
from edgeopt.models import load_model


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


def test_transformer_ir_keeps_attention_fused(tiny_bert, tmp_path):
    """OpenVINO's PyTorch frontend keeps scaled_dot_product_attention as one op; ONNX spells it out."""
    from edgeopt.export.openvino_ir import has_fused_attention

    result = export_model(load_model(tiny_bert), tmp_path / "out", ExportOptions(targets=("onnx", "openvino")))
    assert result.passed
    art = {a["path"]: a for a in result.manifest.to_json()["artifacts"]}
    assert art["openvino/model.xml"]["converter"] == "pytorch-frontend"
    assert has_fused_attention(tmp_path / "out" / "openvino" / "model.xml")


@pytest.mark.parametrize("frontend", ["fails", "wrong"])
def test_frontend_failure_falls_back_to_onnx(tiny_bert, tmp_path, monkeypatch, frontend):
    """A frontend that raises, or whose IR does not match the source, never reaches the output."""
    import torch

    import edgeopt.export.openvino_ir as ovx

    wrong = None
    if frontend == "wrong":  # a real conversion of the same architecture with other weights
        other = load_model(tiny_bert)
        with torch.no_grad():
            for p in other.module.parameters():
                p.add_(0.5)
        wrong = ovx.from_torch(other)
        assert wrong is not None
    monkeypatch.setattr(ovx, "from_torch", lambda model: wrong)
    result = export_model(load_model(tiny_bert), tmp_path / "out", ExportOptions(targets=("onnx", "openvino")))
    assert result.passed
    art = {a["path"]: a for a in result.manifest.to_json()["artifacts"]}
    assert art["openvino/model.xml"]["converter"] == "onnx"
    assert art["openvino/model.xml"]["verification"]["passed"]


def test_tensorrt_target_keeps_a_qdq_int8_model(tiny_bert, tmp_path):
    """With TensorRT among the targets, auto also builds static QDQ for a transformer and keeps it
    (as model.int8.onnx or model.int8.qdq.onnx) for the engine builder."""
    import numpy as np

    from edgeopt.data.dataset import Dataset
    from edgeopt.export.tensorrt import int8_qdq_source
    from edgeopt.optimize.quantize.config import Int8Config
    from edgeopt.optimize.quantize.int8 import Int8Job, quantize_int8

    model = load_model(tiny_bert)
    stage = tmp_path / "out"
    export_model(model, stage, ExportOptions(targets=("onnx", "openvino")))
    words = "red blue navy men women shirt shoes slim fit cotton kurta watch bag jeans".split()
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(48):
        enc = model.tokenizer([" ".join(rng.choice(words, 6))], return_tensors="np")
        samples.append({n: enc[n].astype("int64") for n in model.io.input_names})
    data = Dataset(samples, source="titles")
    job = Int8Job(stage / "model.onnx", data, data, "logits", "mse", transformer=True,
                  fp32_xml=stage / "openvino" / "model.xml", fused_attention=True, want_qdq=True)
    outcome = quantize_int8(job=job, stage=stage, cfg=Int8Config(max_drop=0.5, speed_check=False))
    assert outcome.passed and "static" in [c.name for c in outcome.candidates]
    source = int8_qdq_source(stage)
    assert source is not None and source.name in ("model.int8.onnx", "model.int8.qdq.onnx")
    assert (outcome.qdq is None) == (source.name == "model.int8.onnx")


def test_onnxruntime_fused_graph_matches_the_source(tiny_bert, tmp_path):
    """The eager-attention re-export fuses every layer's attention and computes the same logits;
    the source module keeps its own attention implementation afterwards."""
    from edgeopt.export.ort_fused import fused_fp32

    model = load_model(tiny_bert)
    before = model.module.inner.config._attn_implementation
    feeds = model.sample_feeds()
    refs = [model.reference(f) for f in feeds]
    path, report = fused_fp32(model, tmp_path / "fused.onnx", feeds, refs)
    assert path is not None and report["fused"], report
    assert report["ops"]["Attention"] == 2 and report["max_abs_diff"] < 1e-4
    # the SkipLayerNormalizations are split back into Add / Sum / LayerNormalization (faster kernels)
    assert report["ops"]["SkipLayerNormalization split"] == report["ops"]["SkipLayerNormalization"] > 0
    assert model.module.inner.config._attn_implementation == before
    assert not (tmp_path / "fused.eager.onnx").exists()


def test_model_onnx_is_traced_with_eager_attention_and_fused_without_a_second_export(tiny_bert, tmp_path):
    """model.onnx of a transformer is traced with eager attention (smaller, faster in onnxruntime);
    the source keeps its attention implementation, and the fused graph is made from that file."""
    from edgeopt.export.onnx import export_onnx
    from edgeopt.export.ort_fused import fused_fp32

    model = load_model(tiny_bert)
    before = model.module.inner.config._attn_implementation
    assert export_onnx(model, tmp_path / "model.onnx") == {"exporter": "torchscript", "attention": "eager"}
    assert model.module.inner.config._attn_implementation == before
    feeds = model.sample_feeds()
    refs = [model.reference(f) for f in feeds]
    path, report = fused_fp32(model, tmp_path / "fused.onnx", feeds, refs, exported=tmp_path / "model.onnx")
    assert path is not None and report["fused"] and report["ops"]["Attention"] == 2, report
    assert report["max_abs_diff"] < 1e-4


def _skip_layernorm_graph(bias: bool, read_mean: bool):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), n) for n in ("gamma", "beta", "bias")]
    ins = ["x", "skip", "gamma", "beta"] + (["bias"] if bias else [])
    outs = ["y", "mean", "", "sum"] if read_mean else ["y", "", "", "sum"]
    nodes = [helper.make_node("SkipLayerNormalization", ins, outs, name="sln", domain="com.microsoft", epsilon=1e-5),
             helper.make_node("Relu", ["sum"], ["r"])]
    graph_outputs = ["y", "r"] + (["mean"] if read_mean else [])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "seq", 8])
                                           for n in ("x", "skip")],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "seq", 1 if n == "mean" else 8])
                               for n in graph_outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("bias", [True, False])
def test_split_skip_layernorm_computes_the_same_and_stays_split(bias, tmp_path):
    """Same outputs (the normalized one and the residual sum) as the fused op, and onnxruntime's
    own SkipLayerNormFusion does not fuse the pair back when a session loads it."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgeopt.export.ort_fused import split_skip_layernorm

    fused = _skip_layernorm_graph(bias, read_mean=False)
    split = onnx.ModelProto()
    split.CopyFrom(fused)
    assert split_skip_layernorm(split) == 1
    assert [n.op_type for n in split.graph.node] == (["Add"] if bias else []) + ["Sum", "LayerNormalization", "Relu"]
    onnx.checker.check_model(split)
    rng = np.random.default_rng(1)
    feed = {n: rng.standard_normal((1, 5, 8)).astype(np.float32) * 3 for n in ("x", "skip")}
    want = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    got = ort.InferenceSession(split.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feed)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    loaded = [n.op_type for n in onnx.load(str(tmp_path / "loaded.onnx")).graph.node]
    assert "SkipLayerNormalization" not in loaded and "LayerNormalization" in loaded


def test_split_skip_layernorm_names_unnamed_nodes_apart():
    import onnx

    from edgeopt.export.ort_fused import split_skip_layernorm

    model = _skip_layernorm_graph(True, read_mean=False)
    first = model.graph.node[0]
    second = onnx.helper.make_node("SkipLayerNormalization", ["y", "skip", "gamma", "beta", "bias"], ["y2"],
                                   domain="com.microsoft", epsilon=1e-5)
    first.name = ""
    model.graph.node.insert(1, second)
    model.graph.output.append(onnx.helper.make_tensor_value_info("y2", onnx.TensorProto.FLOAT, [1, "seq", 8]))
    assert split_skip_layernorm(model) == 2
    onnx.checker.check_model(model, full_check=True)  # no tensor or node name written twice
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)


def test_split_skip_layernorm_keeps_a_node_whose_statistics_are_read():
    from edgeopt.export.ort_fused import split_skip_layernorm

    model = _skip_layernorm_graph(True, read_mean=True)
    assert split_skip_layernorm(model) == 0
    assert [n.op_type for n in model.graph.node] == ["SkipLayerNormalization", "Relu"]


def test_onnxruntime_fusion_is_skipped_for_other_models(tiny, tmp_path):
    from edgeopt.export.ort_fused import fused_fp32

    model = load_model(tiny["resnet_pt2"])
    path, report = fused_fp32(model, tmp_path / "fused.onnx", [], [])
    assert path is None and not report["fused"] and "pt2" in report["reason"]


def _off_by_one(fp32, out, *args, **kwargs):
    """Stands in for a quantizer: a "quantized" model whose logits are off by 1 (fails any gate)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32))
    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), "one"))
    model.graph.node.append(onnx.helper.make_node("Add", ["logits_raw", "one"], ["logits"], name="off_by_one"))
    onnx.save(model, str(out))
    return out


def _gate_tiny_bert(tiny_bert, stage):
    """Export the tiny BERT (ONNX + OpenVINO) and run the INT8 gate on 32 titles (mse, 0.01)."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.export.openvino_ir import has_fused_attention
    from edgeopt.optimize.quantize.config import Int8Config
    from edgeopt.optimize.quantize.int8 import Int8Job, quantize_int8

    model = load_model(tiny_bert)
    export_model(model, stage, ExportOptions(targets=("onnx", "openvino")))
    enc = model.tokenizer(["red shirt", "blue slim fit jeans", "men watch", "cotton kurta"] * 8, return_tensors="np",
                          padding=True)
    data = Dataset([{n: enc[n][i:i + 1].astype("int64") for n in model.io.input_names} for i in range(32)],
                   source="titles")
    xml = stage / "openvino" / "model.xml"
    job = Int8Job(stage / "model.onnx", data, data, "logits", "mse", transformer=True, fp32_xml=xml,
                  fused_attention=has_fused_attention(xml))
    return quantize_int8(job=job, stage=stage, cfg=Int8Config(max_drop=0.01, speed_check=False))


def _blockwise_off_by_one(fp32, out, block_size):
    """Stands in for ort.quantize_blockwise: an off-by-one model, "converted" from many MatMuls."""
    _off_by_one(fp32, out)
    return 1000


def test_auto_tries_blockwise_int8_when_dynamic_fails(tiny_bert, tmp_path, monkeypatch):
    """When dynamic INT8 (all its rungs) fails the gate, onnxruntime's last rung is blockwise INT8
    (MatMulNBits), coarse blocks first; a pass there is kept, and static QDQ is not built."""
    import onnx

    from edgeopt.optimize.quantize import ort as qort

    monkeypatch.setattr(qort, "quantize_dynamic_int8", _off_by_one)
    monkeypatch.setattr(qort, "nncf_qdq", lambda *a, **k: pytest.fail("static QDQ built after blockwise passed"))
    stage = tmp_path / "out"
    outcome = _gate_tiny_bert(tiny_bert, stage)
    names = [c.name for c in outcome.candidates]
    assert names[:2] == ["dynamic", "blockwise"] and "static" not in names
    blockwise = outcome.candidates[1]
    assert not outcome.candidates[0].passed and blockwise.passed and outcome.onnx is blockwise
    assert blockwise.recipe.block_size == 128 and blockwise.attempts == 1  # the first block size passed
    ops = [n.op_type for n in onnx.load(str(stage / "model.int8.onnx")).graph.node]
    assert ops.count("MatMulNBits") >= 12 and "MatMul" in ops  # attention's two activation MatMuls stay


def test_auto_falls_back_to_static_when_dynamic_and_blockwise_fail(tiny_bert, tmp_path, monkeypatch):
    """auto skips static QDQ for transformers only for speed: when dynamic and blockwise INT8
    cannot pass the gate, static is still tried before the export gives up."""
    from edgeopt.optimize.quantize import ort as qort

    monkeypatch.setattr(qort, "quantize_dynamic_int8", _off_by_one)
    monkeypatch.setattr(qort, "quantize_blockwise", _blockwise_off_by_one)
    outcome = _gate_tiny_bert(tiny_bert, tmp_path / "out")
    assert [c.name for c in outcome.candidates][:3] == ["dynamic", "blockwise", "static"]
    blockwise = outcome.candidates[1]
    assert not blockwise.passed and blockwise.attempts == 3 and blockwise.recipe.block_size == 128  # all tried
    assert not outcome.candidates[0].passed and outcome.passed and outcome.onnx.name == "static"


def test_openvino_int8_is_kept_when_onnxruntime_int8_fails(tiny_bert, tmp_path, monkeypatch):
    """OpenVINO INT8 (NNCF on the IR) is tried even when every ONNX Runtime candidate fails the
    gate: the export then keeps openvino/model.int8.xml, not model.int8.onnx, and says so."""
    from edgeopt.optimize.quantize import ort as qort

    monkeypatch.setattr(qort, "quantize_dynamic_int8", _off_by_one)
    monkeypatch.setattr(qort, "quantize_blockwise", _blockwise_off_by_one)
    monkeypatch.setattr(qort, "nncf_qdq", _off_by_one)
    stage = tmp_path / "out"
    outcome = _gate_tiny_bert(tiny_bert, stage)
    names = [c.name for c in outcome.candidates]
    assert names[:3] == ["dynamic", "blockwise", "static"] and names[-1].startswith("openvino")
    assert not any(c.passed for c in outcome.candidates if c.runtime == "onnxruntime")
    assert outcome.onnx is None and outcome.openvino is not None and outcome.passed
    assert (stage / "openvino" / "model.int8.xml").exists() and not (stage / "model.int8.onnx").exists()


def test_int8_mode_blockwise_writes_a_matmulnbits_model_and_says_so(tiny_bert, tmp_path):
    """`--int8-mode blockwise` (what a strict gate reaches last) from the CLI: model.int8.onnx runs
    onnxruntime's MatMulNBits, and the manifest says how its weights and activations are quantized."""
    import onnx

    from tests.conftest import run_cli

    out = tmp_path / "out"
    r = run_cli("export", tiny_bert, "-o", out, "--to", "onnx", "--int8", "--int8-mode", "blockwise",
                "--no-speed-check", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads(r.stdout)
    assert [c["name"] for c in manifest["int8"]["candidates"]] == ["blockwise"]
    art = {a["path"]: a for a in manifest["artifacts"]}["model.int8.onnx"]
    assert art["int8_mode"] == "blockwise" and art["runtimes"] == ["onnxruntime"] and art["block_size"] == 128
    assert art["weights"] == "int8 symmetric, one scale per block of 128 input channels"
    assert art["activations"].startswith("int8 per block of 128 at run time")
    assert art["verification"]["passed"] and art["quality"]["metric"] == manifest["int8"]["metric"]
    ops = [n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node]
    assert ops.count("MatMulNBits") >= 12 and "DynamicQuantizeLinear" not in ops

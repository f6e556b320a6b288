"""The Python API: edgeopt.export(...) and edgeopt.bench(...), what the CLI calls too."""

import inspect
import subprocess
import sys

import pytest


def test_import_edgeopt_is_cheap_and_exposes_the_commands():
    """`import edgeopt` and reaching its command functions load no heavy library (and no numpy)."""
    code = ("import sys, edgeopt; fns = (edgeopt.export, edgeopt.bench); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'onnx', 'transformers', 'nncf', "
            "'numpy', 'click', 'rich') if m in sys.modules]; print(heavy, all(map(callable, fns)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True"]


def test_command_functions_are_keyword_only_past_their_main_arguments():
    from edgeopt.bench.api import bench
    from edgeopt.export.api import export

    for fn, positional in ((export, ["model", "out"]), (bench, ["artifact"])):
        params = inspect.signature(fn).parameters.values()
        assert [p.name for p in params if p.kind is not p.KEYWORD_ONLY] == positional, fn


def test_export_then_bench_from_python(tiny, tmp_path):
    """The whole chain from Python: results, not printing; a second call still reaches the function
    (importing the edgeopt.export subpackage must not hide it); bad input raises UsageError."""
    import edgeopt
    from edgeopt.errors import UsageError

    logged = []
    out = tmp_path / "out"
    result = edgeopt.export(tiny["resnet_pt2"], out, to=["onnx"], log=logged.append)
    assert result.passed and result.verified and result.failure is None and result.int8_passed is None
    assert [a.path for a in result.manifest.artifacts] == ["model.onnx"] and (out / "manifest.json").is_file()
    assert any("exporting to ONNX" in m for m in logged)
    import edgeopt.export.pipeline  # noqa: F401 - binds the subpackage on edgeopt

    again = edgeopt.export(tiny["resnet_pt2"], tmp_path / "again", to="onnx")
    assert again.passed and again.manifest.artifacts[0].sha256 == result.manifest.artifacts[0].sha256
    with pytest.raises(UsageError, match="add --int8"):
        edgeopt.export(tiny["resnet_pt2"], tmp_path / "x", to="onnx", calib="data.npz")
    assert not (tmp_path / "x").exists()

    bench = edgeopt.bench(out, runtimes="onnxruntime", cold_runs=1, repeats=1, seconds=0.05, warmup=0.02,
                          cache_modes=False)
    assert bench.passed and bench.gate_rows == [] and "gate" not in bench.document
    (record,) = bench.document["records"]
    assert record["artifact"] == "model.onnx" and record["latency_ms"]["p50"] > 0
    with pytest.raises(UsageError, match="--max-regression needs --baseline"):
        edgeopt.bench(out, max_regression=5)


def test_manifest_reads_back_typed(tiny, tmp_path):
    """Manifest.from_json is the inverse of to_json (what bench and demo read)."""
    import edgeopt
    from edgeopt.manifest import Manifest, read_manifest

    out = tmp_path / "out"
    written = edgeopt.export(tiny["resnet_pt2"], out, to="onnx").manifest
    read = read_manifest(out)
    assert isinstance(read, Manifest) and read.to_json() == written.to_json()
    assert read.artifacts[0].verification["passed"] and read.inputs[0].name == "x"

"""One rule for errors (DESIGN.md): the user's input or environment -> one line, exit 2; a failed
gate or measurement -> exit 1; anything unexpected -> one line naming a log file, exit 3. Never a
raw traceback, never a half-written output."""

import json
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_ARCH, run_cli

sys.path.insert(0, str(ROOT / "tests"))
from hf_families import FAMILIES  # noqa: E402


def _one_line(r, code, expected):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error:") and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_unexpected_error_is_exit_3_with_a_log(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import edgeopt.doctor
    from edgeopt.cli import main

    def broken():
        raise KeyError("cpu_flags")  # a bug: edgeopt's own code failed, not the user's input

    monkeypatch.setattr(edgeopt.doctor, "report", broken)
    monkeypatch.setenv("EDGEOPT_LOG_DIR", str(tmp_path / "logs"))
    r = CliRunner().invoke(main, ["doctor"])
    assert r.exit_code == 3
    line = r.output.strip()
    assert "\n" not in line and "unexpected KeyError" in line and "bug in edgeopt" in line
    [log] = (tmp_path / "logs").iterdir()
    assert str(log) in line and "Traceback" in log.read_text() and "cpu_flags" in log.read_text()
    assert "Traceback" not in r.output


def test_verbose_prints_the_traceback(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import edgeopt.export.pipeline
    from edgeopt.cli import main

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(edgeopt.export.pipeline, "export_model", broken)
    monkeypatch.setenv("EDGEOPT_LOG_DIR", str(tmp_path / "logs"))
    from tests.make_models import make

    tiny = make(tmp_path / "tiny")
    args = ["export", str(tiny["resnet_pt2"]), "-o", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and "Traceback" not in r.output
    r = CliRunner().invoke(main, [*args, "-v"])
    assert r.exit_code == 3 and "Traceback" in r.output and "ZeroDivisionError" in r.output


@pytest.fixture(scope="module")
def recommender(tmp_path_factory, minilm_path):
    return FAMILIES["session-gru"][0](tmp_path_factory.mktemp("rec") / "rec", minilm_path)


def test_calibration_ids_beyond_the_vocabulary(recommender, tmp_path):
    path, args = recommender
    bad = tmp_path / "bad.npz"  # ids up to 6,999 for an item table of 1,000 rows
    np.savez(bad, item_ids=np.random.default_rng(0).integers(0, 7000, (64, 12)).astype("int64"))
    r = run_cli("export", path, *args, "-o", tmp_path / "out", "--int8", "--calib", bad)
    _one_line(r, 2, "does not fit")
    assert "item_ids" in r.stderr and not (tmp_path / "out").exists()


def test_sequence_longer_than_the_model_takes(tiny_bert, tmp_path):
    long = tmp_path / "long.npz"
    n = 600  # the tiny BERT has 512 positions
    np.savez(long, input_ids=np.full((8, n), 2000, "int64"), attention_mask=np.ones((8, n), "int64"),
             token_type_ids=np.zeros((8, n), "int64"))
    r = run_cli("export", tiny_bert, "-o", tmp_path / "out", "--int8", "--calib", long)
    _one_line(r, 2, "length 600")
    assert not (tmp_path / "out").exists()


def test_arch_factory_that_raises(tiny, tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text("def net(**kw):\n    raise RuntimeError('CUDA is not available')\n")
    r = run_cli("export", tiny["resnet_pth"], "--arch", f"{factory}:net", "--input", "x:1x3x32x32:float32",
                "-o", tmp_path / "out")
    _one_line(r, 2, "raised RuntimeError")
    assert "CUDA is not available" in r.stderr


@pytest.mark.parametrize("content,expected", [
    (b"hello, this is a text file\n", "(a text file)"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'", "NumPy .npy"),
    (b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", "plain Python pickle"),
])
def test_not_a_torch_checkpoint(tmp_path, content, expected):
    f = tmp_path / "model.pt"
    f.write_bytes(content)
    r = run_cli("export", f, "--arch", TINY_ARCH, "--input", "x:1x3x32x32:float32", "-o", tmp_path / "out")
    _one_line(r, 2, expected)


@pytest.mark.parametrize("where", ["file", "proc", "sys"])
def test_unwritable_output(tiny, tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = {"file": blocker / "out", "proc": "/proc/edgeopt-test/out", "sys": "/sys/edgeopt-test-out"}[where]
    r = run_cli("export", tiny["resnet_pt2"], "-o", out)
    _one_line(r, 2, "cannot write -o")
    if where == "file":
        assert "is a file, not a folder" in r.stderr


def test_empty_flags(tiny, tmp_path):
    _one_line(run_cli("export", tiny["resnet_pt2"], "--to", "", "-o", tmp_path / "o"), 2, "--to is empty")
    _one_line(run_cli("bench", tiny["resnet_pt2"], "--cold-runs", "0"), 2, "--cold-runs must be >= 1")


def test_bench_feeds_ids_the_model_accepts(recommender, tmp_path):
    """An item table of 1,000 rows: bench feeds ids inside it (read from the graph), so the warm
    latency is measured rather than failing inside onnxruntime."""
    path, args = recommender
    out = tmp_path / "out"
    assert run_cli("export", path, *args, "--to", "onnx", "-o", out).returncode == 0
    r = run_cli("bench", out / "model.onnx", "--seq-len", "12", "--cold-runs", "1", "--repeats", "1",
                "--seconds", "0.05", "--warmup", "0", "--no-cache", "--json", "-")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)["records"]
    assert rec["latency_ms"]["p50"] > 0 and "error" not in rec


def test_index_limits_read_from_the_graph(recommender, tmp_path):
    from edgeopt.bench.child import make_feeds
    from edgeopt.models.graph_ids import index_limits
    from edgeopt.spec import TensorSpec

    path, args = recommender
    out = tmp_path / "out"
    assert run_cli("export", path, *args, "-o", out).returncode == 0
    assert index_limits(out / "model.onnx", "onnx") == {"item_ids": 1000}
    assert index_limits(out / "openvino" / "model.xml", "openvino") == {"item_ids": 1000}
    spec = TensorSpec("item_ids", "int64", ("batch", "sequence"))
    feeds = make_feeds([spec], batch=4, seq_len=12, limits={"item_ids": 1000})
    assert feeds["item_ids"].max() < 1000
    assert make_feeds([spec], batch=4, seq_len=12)["item_ids"].min() >= 1000  # the default range, for BERT

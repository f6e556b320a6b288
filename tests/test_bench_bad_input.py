"""Every bad input to `edgeopt bench`: one line on stderr, exit 2, no traceback; and the gate's exit 1."""

import json

import pytest

from tests.conftest import run_cli

FAST = ["--cold-runs", "1", "--no-cache", "--repeats", "1", "--seconds", "0.05", "--warmup", "0"]


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory):
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("bad") / "out"
    export_model(load_model(tiny["resnet_pt2"]), out, ExportOptions(targets=("onnx",)))
    return out / "model.onnx"


def _one_line_error(r, expected):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("edgeopt: error:") and expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr


CASES = {
    "missing artifact": (["does-not-exist.onnx"], "no such artifact"),
    "unloadable artifact": (["{garbage}"], "cannot load garbage.onnx with onnxruntime"),
    "unknown artifact kind": (["{unknown}"], "unknown artifact"),
    "empty export folder": (["{folder}"], "unknown artifact"),
    "unknown target": (["{onnx}", "--target", "cpu,watch"], "unknown target 'watch'"),
    "unknown runtime": (["{onnx}", "--runtime", "coreml"], "unknown runtime 'coreml'"),
    "runtime that cannot load the format": (["{onnx}", "--runtime", "tensorrt"], "cannot load"),
    "batch 0": (["{onnx}", "--batch", "0"], "--batch"),
    "batch not a number": (["{onnx}", "--batch", "one"], "--batch"),
    "negative cold runs": (["{onnx}", "--cold-runs", "-1"], "--cold-runs"),
    "baseline of another schema": (["{onnx}", "--baseline", "{manifest}"], "expected 'edgeopt-bench/1'"),
    "baseline missing": (["{onnx}", "--baseline", "nope.json"], "does not exist"),
    "max regression without baseline": (["{onnx}", "--max-regression", "10"], "needs --baseline"),
    "bad profiles file": (["{onnx}", "--profiles", "{bad_profiles}", "--target", "x"], "unknown key"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, onnx_file, tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "profiles.json").write_text(json.dumps({"x": {"device": "cpu", "ram": 1}}))
    subs = {"{onnx}": onnx_file, "{garbage}": tiny["garbage_onnx"], "{unknown}": tiny["unknown"],
            "{folder}": tmp_path / "empty", "{manifest}": onnx_file.parent / "manifest.json",
            "{bad_profiles}": tmp_path / "profiles.json"}
    args, expected = CASES[case]
    _one_line_error(run_cli("bench", *FAST, *[subs.get(a, a) for a in args]), expected)


def test_gate_exits_1_on_a_regression_and_0_otherwise(onnx_file, tmp_path):
    base = tmp_path / "base.json"
    r = run_cli("bench", onnx_file, *FAST, "--json", base)
    assert r.returncode == 0, r.stderr
    doc = json.loads(base.read_text())

    def scaled(factor):  # a baseline whose artifact was `factor` x faster per call
        d = json.loads(json.dumps(doc))
        for rec in d["records"]:
            for rnd in rec["samples"]["rounds"]:
                rnd["latency_ms"] = [x / factor for x in rnd["latency_ms"]]
                rnd["cpu_ms"] = [x / factor for x in rnd["cpu_ms"]]
        path = tmp_path / f"base-{factor}.json"
        path.write_text(json.dumps(d))
        return path

    r = run_cli("bench", onnx_file, *FAST, "--baseline", scaled(3.0), "--max-regression", "10", "--json", "-")
    assert r.returncode == 1, r.stderr
    assert "regression" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("edgeopt: error:")
    gate = json.loads(r.stdout)["gate"]
    assert gate["passed"] is False and gate["rows"][0]["status"] == "regression" and gate["metric"] == "cpu"
    r = run_cli("bench", onnx_file, *FAST, "--baseline", scaled(1 / 3.0), "--max-regression", "10", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["gate"]["rows"][0]["status"] == "improved"

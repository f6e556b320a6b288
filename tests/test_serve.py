"""edgeopt serve: the Open Inference Protocol v2 through NVIDIA's tritonclient (a client no one here
wrote) and plain HTTP, /metrics through prometheus_client's parser, and every bad input of issue 31
(4xx with one line, the server keeps serving, nothing installed changes)."""

import json
import signal
import socket

import numpy as np
import pytest

from tests.bundle_fixtures import bundles, keys, tiny_export, tree_digest  # noqa: F401
from tests.conftest import run_cli
from tests.serve_fixtures import NAME, golden, install, servers, versions  # noqa: F401

pytest.importorskip("uvicorn")
httpclient = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def dest_v1(versions, keys, tmp_path_factory):
    dest = tmp_path_factory.mktemp("serve-dest") / "dest"
    install(versions["1.0"], dest, keys)
    return dest


def test_tritonclient_and_plain_http(dest_v1, servers):
    from prometheus_client.parser import text_string_to_metric_families
    from tritonclient.utils import InferenceServerException

    server = servers(dest_v1)
    feeds, expected = golden(dest_v1 / NAME / "current")
    x = feeds["x"]
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_model_metadata(NAME)
    manifest = json.loads((dest_v1 / NAME / "1.0" / "manifest.json").read_text())
    assert meta["versions"] == ["1.0"] and meta["runtime"] == "onnxruntime"
    assert meta["sha256"] == manifest["files"]["model.onnx"]["sha256"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    for binary_in in (True, False):  # the binary-tensor extension and JSON tensors
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary_in)
        for outputs in (None, [httpclient.InferRequestedOutput("output", binary_data=False)]):
            result = client.infer(NAME, [inp], outputs=outputs, request_id="r1")
            np.testing.assert_allclose(result.as_numpy("output"), expected["output"], rtol=1e-4, atol=1e-5)
            assert result.get_response()["model_version"] == "1.0" and result.get_response()["id"] == "r1"
    result = client.infer(NAME, [inp], model_version="1.0")
    np.testing.assert_allclose(result.as_numpy("output"), expected["output"], rtol=1e-4, atol=1e-5)
    with pytest.raises(InferenceServerException, match="version '7' of resnet is not served"):
        client.infer(NAME, [inp], model_version="7")
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.infer("nope", [inp])
    client.close()

    status, doc = server.infer_json({"x": x})  # plain HTTP, JSON both ways
    assert status == 200 and doc["model_version"] == "1.0"
    [out] = doc["outputs"]
    assert out["shape"] == list(expected["output"].shape) and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(out["shape"]), expected["output"],
                               rtol=1e-4, atol=1e-5)

    status, headers, body = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}
    ok = samples[("edgeopt_serve_requests_total", (("code", "200"), ("model", NAME), ("version", "1.0")))]
    assert ok == 6  # 4 + the pinned version + the plain one
    assert samples[("edgeopt_serve_version_live", (("model", NAME), ("version", "1.0")))] == 1
    assert samples[("edgeopt_serve_request_seconds_count", (("model", NAME),))] == 6
    assert samples[("edgeopt_serve_requests_total", (("code", "404"), ("model", NAME), ("version", "")))] == 1
    assert server.stop() == -signal.SIGTERM and "Traceback" not in server.text_log()  # uvicorn re-raises it


def _post(server, path, body, headers=None):
    status, _, raw = server.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    return status, raw


def _one_line_error(raw: bytes) -> str:
    doc = json.loads(raw)
    assert set(doc) == {"error"} and "\n" not in doc["error"] and doc["error"]
    return doc["error"]


def test_bad_input_is_a_4xx_and_changes_nothing(dest_v1, servers, tmp_path):
    import shutil

    dest = tmp_path / "dest"
    shutil.copytree(dest_v1, dest, symlinks=True)
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    server = servers(dest, "--token-file", token, "--max-body-bytes", 400_000)
    auth = {"Authorization": "Bearer s3cret-token-0123456789"}
    before = tree_digest(dest)
    feeds, expected = golden(dest / NAME / "current")
    x = feeds["x"]

    def tensor(**over):
        return json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.ravel().tolist(), **over}]}).encode()

    cases = [
        ("malformed JSON", f"/v2/models/{NAME}/infer", b'{"inputs": [', 400, "not valid JSON"),
        ("no inputs", f"/v2/models/{NAME}/infer", b'{"inputs": []}', 400, "non-empty 'inputs'"),
        ("wrong shape", f"/v2/models/{NAME}/infer", tensor(shape=[2, 3, 16, 64]), 400, "takes [-1, 3, 32, 32]"),
        ("data and shape disagree", f"/v2/models/{NAME}/infer", tensor(shape=[1, 3, 32, 32]), 400, "values for"),
        ("wrong dtype", f"/v2/models/{NAME}/infer", tensor(datatype="FP64"), 400, "takes FP32"),
        ("strings as FP32", f"/v2/models/{NAME}/infer",
         json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}).encode(), 400,
         "does not hold FP32"),
        ("unknown input", f"/v2/models/{NAME}/infer", tensor(name="y"), 400, "has no input 'y'"),
        ("text to an image model", f"/v2/models/{NAME}/infer",
         json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["shoes"]}]}).encode(),
         400, "takes x FP32"),
        ("unknown output", f"/v2/models/{NAME}/infer",
         json.dumps({**json.loads(tensor()), "outputs": [{"name": "logits"}]}).encode(), 400, "has no output"),
        ("unknown model", "/v2/models/shelf-camera/infer", tensor(), 404, "no model 'shelf-camera'"),
        ("unknown version", f"/v2/models/{NAME}/versions/0.9/infer", tensor(), 404, "not served (live: 1.0)"),
        ("model name with ..", "/v2/models/%2E%2E/infer", tensor(), 400, "is not a model name"),
        ("body over the limit", f"/v2/models/{NAME}/infer", b"[" + b"0," * 300_000 + b"0]", 413, "limit"),
        ("binary size past the body", f"/v2/models/{NAME}/infer",
         tensor(parameters={"binary_data_size": 10 ** 6}), 400, "runs past"),
    ]
    for what, path, body, status, fragment in cases:
        got, raw = _post(server, path, body, auth)
        assert got == status, (what, raw)
        assert fragment in _one_line_error(raw), (what, raw)
        assert server.infer_json(feeds, headers=auth)[0] == 200, what  # still serving
    for path in (f"/v2/models/{NAME}/infer", "/metrics", f"/v2/models/{NAME}"):  # the token
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            status, raw = _post(server, path, tensor(), headers) if path.endswith("infer") else \
                server.get(path, headers=headers)[::2]
            assert status == 401 and "bearer token" in _one_line_error(raw)
    assert server.get("/v2/health/ready")[0] == 200  # probes need no token
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # '..' sent as is
        s.sendall(f"GET /v2/models/../ready HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
                  "Connection: close\r\n\r\n".encode())
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.split(b"\r\n", 1)[0].split()[1] == b"400" and b"is not a model name" in reply

    # a bundle whose files change under the loaded version: the checked copy in memory keeps serving
    assert tree_digest(dest) == before
    artifact = dest / NAME / "1.0" / "model.onnx"
    original = artifact.read_bytes()
    artifact.write_bytes(original[:-16] + b"\0" * 16)
    server.wait(lambda: "files_changed" in json.loads(server.get(f"/v2/models/{NAME}", headers=auth)[2]), 15,
                "aware of the change")
    status, doc = server.infer_json(feeds, headers=auth)
    assert status == 200 and doc["model_version"] == "1.0"
    np.testing.assert_allclose(np.array(doc["outputs"][0]["data"], np.float32).reshape(expected["output"].shape),
                               expected["output"], rtol=1e-4, atol=1e-5)
    assert "does not match its sha256" in server.text_log()
    artifact.write_bytes(original)
    assert tree_digest(dest) == before  # the server switched, removed or wrote nothing


def test_load_shedding_503_with_retry_after(dest_v1, servers):
    import threading

    from prometheus_client.parser import text_string_to_metric_families

    server = servers(dest_v1, "--workers", "1", "--max-queue", "1")
    big = np.random.default_rng(0).standard_normal((512, 3, 32, 32)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "x", "shape": list(big.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": big.nbytes}}],
                       "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}).encode()
    replies, lock = [], threading.Lock()

    def client():
        conn = server.connection()
        for _ in range(4):
            status, headers, raw = server.request("POST", f"/v2/models/{NAME}/infer", head + big.tobytes(),
                                                  {"Inference-Header-Content-Length": str(len(head))}, conn=conn)
            with lock:
                replies.append((status, headers, raw))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = [r[0] for r in replies]
    assert len(codes) == 32 and set(codes) <= {200, 503} and codes.count(200) >= 2 and codes.count(503) >= 1, codes
    for status, headers, raw in replies:
        if status == 503:
            assert headers.get("retry-after") == "1" and "retry" in _one_line_error(raw)
        else:
            size = int(headers["inference-header-content-length"])
            out = json.loads(raw[:size])["outputs"][0]
            assert out["shape"] == [512, 10] and len(raw) - size == out["parameters"]["binary_data_size"] == 512 * 40
    body = server.get("/metrics")[2].decode()
    shed = [s.value for f in text_string_to_metric_families(body) for s in f.samples
            if s.name == "edgeopt_serve_shed_total"]
    assert shed == [codes.count(503)]


def test_cli_bad_options(tmp_path, dest_v1):
    r = run_cli("serve", tmp_path / "missing")
    assert r.returncode == 2 and "no such install folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "short").write_text("abc\n")
    r = run_cli("serve", dest_v1, "--token-file", tmp_path / "short")
    assert r.returncode == 2 and "at least 16 characters" in r.stderr
    r = run_cli("serve", dest_v1, "--workers", "0")
    assert r.returncode == 2 and "--workers 0" in r.stderr


def test_kill_and_restart_is_ready_again(dest_v1, servers):
    server = servers(dest_v1, start=False)
    first = server.start()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    again = server.start()
    assert server.infer_json(golden(dest_v1 / NAME / "current")[0])[0] == 200
    assert again < max(3 * first, 10), (first, again)  # the 1.5x target is measured in benchmarks/serve_minilm.py


def test_timeout_is_a_504_and_the_server_keeps_serving(dest_v1, servers):
    server = servers(dest_v1, "--timeout", "0.001", "--rollback-after", "0")
    big = np.random.default_rng(0).standard_normal((256, 3, 32, 32)).astype(np.float32)
    status, doc = server.infer_json({"x": big})
    assert status == 504 and doc == {"error": "no answer within 0.001 s"}
    assert server.get("/v2/health/ready")[0] == 200
    body = server.get("/metrics")[2].decode()
    assert 'edgeopt_serve_errors_total{model="resnet",reason="timeout"} 1.0' in body


def test_bench_a_served_model_beside_the_same_artifact_in_process(dest_v1, servers):
    server = servers(dest_v1)
    url = f"http://{server.url}/v2/models/{NAME}"
    r = run_cli("bench", url, "--cold-runs", "1", "--repeats", "2", "--seconds", "0.2", "--warmup", "0.05",
                "--concurrency", "1,2", "--no-cache", "--json", "-")
    assert r.returncode == 0, r.stderr
    records = {rec["runtime"]: rec for rec in json.loads(r.stdout)["records"]}
    assert set(records) == {"http", "onnxruntime"}  # one table: served, and the same file in process
    served, local = records["http"], records["onnxruntime"]
    assert served["path"] == url and local["path"] == str((dest_v1 / NAME / "1.0" / "model.onnx").absolute())
    assert served["artifact"] == local["artifact"] == "model.onnx"
    for rec in (served, local):
        assert rec["latency_ms"]["p50"] > 0 and rec["throughput_concurrent_ips"]["2"] > 0 and not rec.get("errors")
    metrics = server.get("/metrics")[2].decode()
    assert f'edgeopt_serve_requests_total{{code="200",model="{NAME}",version="1.0"}}' in metrics  # it was asked
    r = run_cli("bench", f"http://{server.url}/v2/models/nope")
    assert r.returncode == 2 and "answered 404" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("bench", f"http://{server.url}/v1/nope")
    assert r.returncode == 2 and "expected http://HOST:PORT/v2/models/NAME" in r.stderr

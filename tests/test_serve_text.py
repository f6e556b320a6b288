"""edgeopt serve on a text model: a BYTES input `text` tokenized with the packaged tokenizer, through
tritonclient (binary and JSON BYTES) and plain HTTP, equal to the device runtime in process; and the
server on a Unix socket."""

import http.client
import json
import socket

import numpy as np
import pytest

from tests.bundle_fixtures import keys  # noqa: F401
from tests.conftest import run_cli
from tests.serve_fixtures import servers  # noqa: F401

pytest.importorskip("uvicorn")
httpclient = pytest.importorskip("tritonclient.http")
TITLES = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt", "organic green tea 100 bags"]


@pytest.fixture(scope="module")
def text_dest(tiny_bert, keys, tmp_path_factory):
    """The tiny BERT classifier exported to ONNX, packaged with its tokenizer, installed."""
    work = tmp_path_factory.mktemp("serve-text")
    r = run_cli("export", tiny_bert, "--to", "onnx", "-o", work / "out")
    assert r.returncode == 0, r.stderr
    r = run_cli("package", work / "out", "-o", work / "bert.edgepkg", "--sign-key", keys["good"].private_key,
                "--version", "1.0")
    assert r.returncode == 0, r.stderr
    r = run_cli("install", work / "bert.edgepkg", "--dest", work / "dest", "--public-key", keys["good"].public_key)
    assert r.returncode == 0, r.stderr
    return work / "dest"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(self.path)


def test_text_input_through_the_packaged_tokenizer(text_dest, servers, tmp_path):
    from edgeopt.runtime import load

    [name] = [p.name for p in text_dest.iterdir() if p.is_dir() and not p.name.startswith(".")]
    model = load(text_dest / name)
    out_name = model.engine.output_names[0]
    want = np.concatenate([model.run(model.tokenize([t]))[out_name] for t in TITLES])
    server = servers(text_dest)
    client = httpclient.InferenceServerClient(server.url)
    meta = client.get_model_metadata(name)
    assert {"name": "text", "datatype": "BYTES", "shape": [-1]} in meta["inputs"]
    for binary in (True, False):
        rows = []
        for title in TITLES:
            inp = httpclient.InferInput("text", [1], "BYTES")
            inp.set_data_from_numpy(np.array([title.encode()], dtype=np.object_), binary_data=binary)
            result = client.infer(name, [inp], outputs=[httpclient.InferRequestedOutput(out_name)])
            rows.append(result.as_numpy(out_name))
        np.testing.assert_allclose(np.concatenate(rows), want, rtol=1e-4, atol=1e-5)
    client.close()

    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TITLES[1]]}]}
    status, _, raw = server.request("POST", f"/v2/models/{name}/infer", json.dumps(body).encode())
    assert status == 200
    out = {o["name"]: o for o in json.loads(raw)["outputs"]}[out_name]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(out["shape"]), want[1:2], rtol=1e-4,
                               atol=1e-5)
    body["inputs"][0]["shape"] = [0]
    body["inputs"][0]["data"] = []
    status, _, raw = server.request("POST", f"/v2/models/{name}/infer", json.dumps(body).encode())
    assert status == 400 and "1 to 256 texts" in json.loads(raw)["error"]
    tensors = {"inputs": [{"name": n, "shape": [1, 6 if n == "attention_mask" else 5], "datatype": "INT64",
                           "data": [1] * (6 if n == "attention_mask" else 5)} for n in model.engine.input_names]}
    status, _, raw = server.request("POST", f"/v2/models/{name}/infer", json.dumps(tensors).encode())
    assert status == 400 and "disagree on axis" in json.loads(raw)["error"]  # caught before the runtime
    server.stop()

    sock = tmp_path / "serve.sock"  # the same server on a Unix socket
    on_socket = servers(text_dest, "--uds", sock, start=False)
    on_socket.start(wait_ready=False)
    conn = UnixConnection(str(sock))

    def ready():
        try:
            conn.request("GET", "/v2/health/ready")
            r = conn.getresponse()
            r.read()
            return r.status == 200
        except OSError:
            conn.close()
            return False
    on_socket.wait(ready, 60, "ready on the socket")
    conn.request("POST", f"/v2/models/{name}/infer", json.dumps(body | {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": [TITLES[0]]}]}).encode())
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["model_name"] == name
    conn.close()

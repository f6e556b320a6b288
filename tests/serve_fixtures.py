"""Helpers for the `edgeopt serve` tests: versions of the tiny model that answer differently, a real
server in a subprocess on 127.0.0.1 (the console script), and plain-HTTP calls."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

NAME = "resnet"  # the tiny model's name in its manifest


def variant_export(export: Path, shift: float, out: Path) -> Path:
    """A copy of the tiny export whose head bias is shifted by ``shift``: every version answers
    differently, so an answer shows which version computed it."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.manifest import file_digest

    shutil.copytree(export, out)
    model = onnx.load(str(out / "model.onnx"))
    [bias] = [t for t in model.graph.initializer if t.name == "head.bias"]
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(shift), bias.name))
    onnx.save(model, str(out / "model.onnx"))
    manifest = json.loads((out / "manifest.json").read_text())
    [art] = manifest["artifacts"]
    art["sha256"], art["bytes"] = file_digest(out / "model.onnx")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def versions(tiny_export, keys, tmp_path_factory):
    """Signed bundles 1.0 .. 4.0 of the tiny model, each with its own head bias."""
    from edgeopt.bundle.build import package

    folder = tmp_path_factory.mktemp("serve-bundles")
    out = {}
    for k in range(1, 5):
        export = variant_export(tiny_export, 0.5 * k, folder / f"export-{k}")
        out[f"{k}.0"] = package(out=export, bundle=folder / f"v{k}.edgepkg", sign_key=keys["good"].private_key,
                                version=f"{k}.0").bundle
    return out


def install(bundle: Path, dest: Path, keys) -> None:
    from edgeopt.bundle.installation import install as do_install

    do_install(bundle=bundle, dest=dest, public_key=keys["good"].public_key)


def golden(folder: Path) -> tuple[dict, dict]:
    """(golden inputs, golden outputs) of an installed version folder."""
    with np.load(folder / "golden" / "inputs.npz") as f:
        feeds = dict(f)
    with np.load(folder / "golden" / "model.onnx.npz") as f:
        outputs = dict(f)
    return feeds, outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``edgeopt serve DEST`` in a subprocess on 127.0.0.1, stopped with SIGTERM (or killed)."""

    def __init__(self, dest: Path, *args, log: Path):
        self.dest, self.args, self.log_path = dest, [str(a) for a in args], log
        self.port = free_port()
        self.proc = None

    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> float:
        exe = Path(sys.executable).parent / "edgeopt"
        self.log = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(exe), "serve", str(self.dest), "--port", str(self.port), *self.args],
                                     stdout=self.log, stderr=self.log)
        if wait_ready:
            self.wait(lambda: self.get("/v2/health/ready")[0] == 200, timeout, "ready")
        return time.perf_counter() - t0

    def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.text_log()}")
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve not {what} within {timeout} s: {self.text_log()}")

    def text_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            if own:
                conn.close()

    def get(self, path: str, **kw) -> tuple[int, dict, bytes]:
        return self.request("GET", path, **kw)

    def infer_json(self, feeds: dict, *, model: str = NAME, conn=None, headers=None) -> tuple[int, dict]:
        body = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
                           for k, v in feeds.items()]}
        status, _, raw = self.request("POST", f"/v2/models/{model}/infer", json.dumps(body).encode(),
                                      {"Content-Type": "application/json", **(headers or {})}, conn=conn)
        return status, json.loads(raw)


@pytest.fixture()
def servers(tmp_path):
    """Make servers with ``servers(dest, *flags)``; every one is stopped at the end of the test."""
    made = []

    def make(dest, *args, start=True):
        server = Server(dest, *args, log=tmp_path / f"serve-{len(made)}.log")
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        if server.proc is not None:
            server.stop(signal.SIGKILL)

"""Fixtures for the fleet tests: a TUF repository of tiny-model bundles served on 127.0.0.1 by
Python's static file server (what the design says hosts it), with a switch to cut a download short."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import keys, refresh_manifest, resign, retar, tiny_export, unpack  # noqa: F401


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        faults = self.server.faults
        if faults.get("down"):
            self.send_error(503)
            return
        cut = faults.get("cut")
        if cut and self.path.endswith(".edgepkg"):
            # the server dies mid-download: full length announced, part of the body sent, connection closed
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.server.served.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve(folder: Path):
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``folder``; yields the server (its
    ``url``, ``faults`` to switch on failures and the ``served`` paths)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    server.faults, server.served = {}, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def fleet_bundles(tiny_export, keys, tmp_path_factory):  # noqa: F811
    """Signed bundles of the tiny model: 1.0, 2.0, the 2.0 delta against 1.0, a 3.0 whose health check
    fails on every device, and a 4.0 of another model name."""
    from edgeopt.bundle.build import package

    folder = tmp_path_factory.mktemp("fleet-bundles")
    key = keys["good"].private_key
    out = {}
    for v in ("1.0", "2.0", "3.0"):
        out[v] = package(out=tiny_export, bundle=folder / f"{v}.edgepkg", sign_key=key, version=v).bundle
    out["2.0-delta"] = package(out=tiny_export, bundle=folder / "2.0-delta.edgepkg", sign_key=key, version="2.0",
                               base=out["1.0"]).bundle
    sick = unpack(out["3.0"], folder / "sick")
    path = sick / "golden" / "model.onnx.npz"
    with np.load(path) as f:
        golden = {k: v + 1.0 for k, v in f.items()}
    np.savez(path, **golden)
    refresh_manifest(sick)
    resign(sick, key)
    out["3.0-sick"] = retar(sick, folder / "3.0-sick.edgepkg")
    other = unpack(out["1.0"], folder / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["name"], manifest["version"] = "other-model", "4.0"
    (other / "manifest.json").write_text(json.dumps(manifest))
    resign(other, key)
    out["other"] = retar(other, folder / "other.edgepkg")
    return out


def model_name(bundle: Path) -> str:
    from edgeopt.bundle.delta import read_head

    return read_head(bundle)[0]["model"]["name"]


def new_repo(tmp_path: Path, **expiry) -> tuple[Path, Path]:
    """An initialized repository and its keys (expiry overrides: timestamp='3s')."""
    from edgeopt.fleet.keys import parse_expiry
    from edgeopt.fleet.repository import init_repo

    repo, keys_dir = tmp_path / "repo", tmp_path / "repo-keys"
    init_repo(repo=repo, keys=keys_dir, expiry=parse_expiry([f"{k}={v}" for k, v in expiry.items()]))
    return repo, keys_dir


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst

"""edgeopt keygen / package / verify on a tiny real export; model_signing's own CLI agrees."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import bundles, keys, tiny_export, unpack  # noqa: F401
from tests.conftest import run_cli


def test_bundle_layout_and_manifest(bundles, tiny_export, tmp_path):
    with tarfile.open(bundles["v1"]) as tar:
        names = tar.getnames()
    assert names[:2] == ["manifest.json", "model.sig"]  # a device reads the manifest first
    folder = unpack(bundles["v1"], tmp_path / "x")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == "1.0" and manifest["bundle"]["signer"]
    listed = set(manifest["files"])
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json", "model.sig"}
    assert {"model.onnx", "golden/inputs.npz", "golden/model.onnx.npz"} <= listed
    # golden outputs are what the shipped artifact computes on the golden inputs
    import onnxruntime as ort

    with np.load(folder / "golden/inputs.npz") as f:
        feeds = dict(f)
    with np.load(folder / "golden/model.onnx.npz") as f:
        golden = dict(f)
    sess = ort.InferenceSession(str(tiny_export / "model.onnx"), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert golden.keys() == out.keys()
    for k in golden:
        np.testing.assert_allclose(golden[k], out[k], rtol=1e-5, atol=1e-6)
    health = manifest["health"]["outputs"]["model.onnx"]
    assert health["tolerance"]["min_cosine"] > 0.99
    assert manifest["evidence"]["verification"]["model.onnx"]["passed"] is True


def test_verify_and_model_signing_cli_agree(bundles, keys, tmp_path):
    r = run_cli("verify", bundles["v1"], "--public-key", keys["good"].public_key, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["signature"] == "verified" and doc["version"] == "1.0"
    assert doc["evidence"]["verification"]["model.onnx"]["passed"] is True
    folder = unpack(bundles["v1"], tmp_path / "x")
    ms = Path(sys.executable).parent / "model_signing"
    good = subprocess.run([str(ms), "verify", "key", str(folder), "--signature", str(folder / "model.sig"),
                           "--public_key", str(keys["good"].public_key)], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([str(ms), "verify", "key", str(folder), "--signature", str(folder / "model.sig"),
                          "--public_key", str(keys["other"].public_key)], capture_output=True, text=True)
    assert bad.returncode != 0


def test_verify_failures_exit_1(bundles, keys, tmp_path):
    wrong = run_cli("verify", bundles["v1"], "--public-key", keys["other"].public_key)
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1
    assert "signature" in wrong.stderr and "Traceback" not in wrong.stderr
    unsigned = run_cli("verify", bundles["unsigned"], "--public-key", keys["good"].public_key)
    assert unsigned.returncode == 1 and "not signed" in unsigned.stderr
    no_key = run_cli("verify", bundles["v1"])  # integrity only, said so
    assert no_key.returncode == 0 and "NOT checked" in no_key.stdout


def test_keygen_never_overwrites(keys):
    r = run_cli("keygen", "-o", keys["good"].private_key.with_suffix(""))
    assert r.returncode == 2 and "never overwrites" in r.stderr
    assert oct(keys["good"].private_key.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/b.tar"], "ends in .edgepkg"),
    (["-o", "{tmp}/b.edgepkg", "--version", "not a version"], "is not a version"),
    (["-o", "{tmp}/b.edgepkg", "--expires", "2001-01-01"], "not in the future"),
    (["-o", "{tmp}/b.edgepkg", "--sign-key", "{tmp}/nokey.key"], "no such signing key"),
    (["-o", "{tmp}/b.edgepkg", "--sign-key", "{export}/manifest.json"], "not an unencrypted PEM private key"),
    (["-o", "{tmp}/b.edgepkg", "--artifact", "nope.onnx"], "--artifact nope.onnx"),
    (["-o", "{tmp}/b.edgepkg", "--base", "{tmp}/old.edgepkg"], "--base"),
    (["-o", "{tmp}/b.edgepkg", "--golden", "{tmp}/missing.npz"], "--golden"),
])
def test_package_bad_input(tiny_export, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, export=tiny_export) for a in args]
    r = run_cli("package", tiny_export, *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_package_refuses_a_changed_artifact(tiny_export, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_export, out)
    data = bytearray((out / "model.onnx").read_bytes())
    data[-1] ^= 1
    (out / "model.onnx").write_bytes(bytes(data))
    r = run_cli("package", out, "-o", tmp_path / "b.edgepkg")
    assert r.returncode == 2 and "changed since" in r.stderr
    assert not (tmp_path / "b.edgepkg").exists()

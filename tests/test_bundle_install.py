"""edgeopt install / rollback: the happy path, every bad input of issue 21 (current stays untouched),
and installs killed with SIGKILL at random moments."""

import json
import os
import random
import resource
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import (bundles, copy_dest, keys, refresh_manifest, resign, retar,  # noqa: F401
                                   tiny_export, tree_digest, unpack, verified_current)
from tests.conftest import run_cli

NAME = "resnet"  # the tiny model's name in its manifest


@pytest.fixture(scope="module")
def installed_v1(bundles, keys, tmp_path_factory):
    """DEST with v1.0 installed (copied per test, never modified)."""
    dest = tmp_path_factory.mktemp("dest-v1") / "dest"
    r = run_cli("install", bundles["v1"], "--dest", dest, "--public-key", keys["good"].public_key, "--json")
    assert r.returncode == 0, r.stderr
    return dest


@pytest.fixture()
def dest(installed_v1, tmp_path):
    return copy_dest(installed_v1, tmp_path / "dest")


def model_name(bundle) -> str:
    with tarfile.open(bundle) as tar:
        return json.load(tar.extractfile("manifest.json"))["model"]["name"]


def test_install_upgrade_rollback_predict(bundles, keys, dest):
    name = model_name(bundles["v1"])
    model_dir = dest / name
    assert verified_current(model_dir, keys["good"].public_key) == "1.0"
    r = run_cli("install", bundles["v2"], "--dest", dest, "--public-key", keys["good"].public_key, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == "2.0" and doc["previous"] == "1.0" and doc["health"]["passed"]
    assert doc["health"]["cache"].startswith("install-time")  # the health check loaded what install prepared
    assert verified_current(model_dir, keys["good"].public_key) == "2.0"
    assert os.readlink(model_dir / "previous") == "1.0"
    r = run_cli("rollback", model_dir, "--json")
    assert r.returncode == 0, r.stderr
    assert verified_current(model_dir, keys["good"].public_key) == "1.0"
    r = run_cli("rollback", model_dir)  # and back
    assert r.returncode == 0 and verified_current(model_dir, keys["good"].public_key) == "2.0"
    feeds = tiny_feeds(dest / name / "current")
    np.savez(dest.parent / "in.npz", **feeds)
    r = run_cli("predict", model_dir, "--input", dest.parent / "in.npz", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["outputs"]
    with np.load(dest / name / "current" / "golden" / "model.onnx.npz") as f:
        golden = dict(f)
    for k, v in golden.items():
        np.testing.assert_allclose(np.array(out[k]["data"], dtype=np.float32), v, rtol=1e-4, atol=1e-5)


def tiny_feeds(folder: Path) -> dict:
    with np.load(folder / "golden" / "inputs.npz") as f:
        return dict(f)


def test_no_downgrade_unless_asked(bundles, keys, dest):
    run = ("--dest", dest, "--public-key", keys["good"].public_key)
    assert run_cli("install", bundles["v2"], *run).returncode == 0
    before = tree_digest(dest)
    r = run_cli("install", bundles["v1"], *run)
    assert r.returncode == 2 and "downgrade" in r.stderr and tree_digest(dest) == before
    r = run_cli("install", bundles["v2"], *run)
    assert r.returncode == 2 and "already installed" in r.stderr
    r = run_cli("install", bundles["v1"], *run, "--allow-downgrade")
    assert r.returncode == 0, r.stderr
    assert verified_current(dest / model_name(bundles["v1"]), keys["good"].public_key) == "1.0"


def test_unsigned_only_when_allowed(bundles, keys, dest):
    r = run_cli("install", bundles["unsigned"], "--dest", dest, "--public-key", keys["good"].public_key)
    assert r.returncode == 1 and "not signed" in r.stderr  # as `edgeopt verify --public-key` exits
    v = run_cli("verify", bundles["unsigned"], "--public-key", keys["good"].public_key)
    assert v.returncode == r.returncode
    r = run_cli("install", bundles["unsigned"], "--dest", dest, "--allow-unsigned", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["signature"] == "absent"


def _tampered_file(folder, keys):
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))


def _tampered_consistently(folder, keys):  # the manifest's hashes updated too: only the signature catches it
    _tampered_file(folder, keys)
    refresh_manifest(folder)


def _missing_signature(folder, keys):
    (folder / "model.sig").unlink()


def _lists_missing_file(folder, keys):
    (folder / "golden" / "inputs.npz").unlink()


def _failing_health(folder, keys):  # a signed bundle whose golden outputs the model does not reproduce
    path = folder / "golden" / "model.onnx.npz"
    with np.load(path) as f:
        golden = {k: v + 1.0 for k, v in f.items()}
    np.savez(path, **golden)
    refresh_manifest(folder)
    resign(folder, keys["good"].private_key)


def _member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, __import__("io").BytesIO(data) if kind == tarfile.REGTYPE else None)
    return add


def _oversized_member(folder, keys):  # bigger than its manifest entry says (a bomb would be, too)
    with open(folder / "golden" / "inputs.npz", "ab") as f:
        f.write(b"\0" * (1 << 20))


BAD = {
    "oversized member": (_oversized_member, None, "manifest.json says"),
    "file and folder clash": (None, _member("model.onnx/x"), "both a file and the folder"),
    "tampered file": (_tampered_file, None, "sha256"),
    "tampered file and manifest": (_tampered_consistently, None, "signature"),
    "missing signature": (_missing_signature, None, "not signed"),
    "manifest lists a missing file": (_lists_missing_file, None, "does not contain"),
    "dotdot member": (None, _member("../evil.txt"), "unsafe member path"),
    "absolute member": (None, _member("/tmp/evil.txt"), "unsafe member path"),
    "symlink member": (None, _member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "link"),
    "hardlink member": (None, _member("hard", tarfile.LNKTYPE, linkname="model.onnx"), "link"),
    "device member": (None, _member("dev", tarfile.CHRTYPE), "device"),
    "unlisted member": (None, _member("extra.txt"), "not listed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundle_leaves_current_untouched(case, bundles, keys, dest, tmp_path):
    edit, extra, message = BAD[case]
    folder = unpack(bundles["v2"], tmp_path / "x")
    if edit:
        edit(folder, keys)
    bad = retar(folder, tmp_path / "bad.edgepkg", extra=extra)
    before = tree_digest(dest)
    r = run_cli("install", bad, "--dest", dest, "--public-key", keys["good"].public_key)
    assert r.returncode == 1, (r.returncode, r.stderr)  # a failed verification, as `edgeopt verify` exits
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert tree_digest(dest) == before  # current, previous, versions, caches: all untouched, nothing left over
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_wrong_key(bundles, keys, dest):
    before = tree_digest(dest)
    r = run_cli("install", bundles["v2"], "--dest", dest, "--public-key", keys["other"].public_key)
    assert r.returncode == 1 and "signature" in r.stderr and tree_digest(dest) == before
    v = run_cli("verify", bundles["v2"], "--public-key", keys["other"].public_key)
    assert v.returncode == r.returncode  # install and verify agree on a failed verification


def test_max_bytes_refuses_a_bundle_too_big_to_unpack(bundles, keys, dest):
    before = tree_digest(dest)
    r = run_cli("install", bundles["v2"], "--dest", dest, "--public-key", keys["good"].public_key, "--max-bytes", "1000")
    assert r.returncode == 1 and "more than the limit of 1000" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and tree_digest(dest) == before


def test_truncated_archive(bundles, keys, dest, tmp_path):
    data = bundles["v2"].read_bytes()
    with tarfile.open(bundles["v2"]) as tar:
        members = tar.getmembers()
    # inside the manifest, in the middle, inside the last file's data, between two headers
    cuts = (700, len(data) // 2, members[-1].offset_data + members[-1].size // 2, members[-1].offset + 100)
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.edgepkg"
        bad.write_bytes(data[:cut])
        before = tree_digest(dest)
        r = run_cli("install", bad, "--dest", dest, "--public-key", keys["good"].public_key)
        assert r.returncode == 1, r.stderr
        assert ("truncated" in r.stderr or "not a readable bundle" in r.stderr), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and tree_digest(dest) == before


def test_failing_health_check_exit_1(bundles, keys, dest, tmp_path):
    folder = unpack(bundles["v2"], tmp_path / "x")
    _failing_health(folder, keys)
    bad = retar(folder, tmp_path / "bad.edgepkg")
    before = tree_digest(dest)
    r = run_cli("install", bad, "--dest", dest, "--public-key", keys["good"].public_key)
    assert r.returncode == 1 and "health check failed" in r.stderr and "1.0 is still current" in r.stderr
    assert tree_digest(dest) == before


def test_expired_bundle(tiny_export, keys, dest, tmp_path):
    from edgeopt.bundle.build import package

    bundle = package(out=tiny_export, bundle=tmp_path / "e.edgepkg", sign_key=keys["good"].private_key,
                     version="5.0", expires="2099-01-01").bundle
    folder = unpack(bundle, tmp_path / "x")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["bundle"]["expires"] = "2001-01-01T00:00:00+00:00"  # as if the clock had passed it (re-signed)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resign(folder, keys["good"].private_key)
    before = tree_digest(dest)
    r = run_cli("install", retar(folder, tmp_path / "old.edgepkg"), "--dest", dest,
                "--public-key", keys["good"].public_key)
    assert r.returncode == 1 and "expired" in r.stderr and tree_digest(dest) == before


def test_no_space_left_mid_write(bundles, keys, dest):
    """A real write failure while unpacking (a 32 KiB file-size limit makes the model's write fail)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))

    before = tree_digest(dest)
    exe = Path(sys.executable).parent / "edgeopt"
    r = subprocess.run([str(exe), "install", str(bundles["v2"]), "--dest", str(dest), "--public-key",
                        str(keys["good"].public_key)], capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode == 2 and "no space left" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and tree_digest(dest) == before


def test_no_space_left_checked_up_front(bundles, keys, dest, monkeypatch):
    import shutil

    from edgeopt.errors import UsageError
    from edgeopt.bundle.installation import install

    usage = shutil.disk_usage(dest)
    monkeypatch.setattr("edgeopt.runtime.archive.shutil.disk_usage",
                        lambda p: usage._replace(free=1 << 20))
    before = tree_digest(dest)
    with pytest.raises(UsageError, match="no space left"):
        install(bundle=bundles["v2"], dest=dest, public_key=keys["good"].public_key)
    assert tree_digest(dest) == before


def test_rollback_without_previous(bundles, dest):
    r = run_cli("rollback", dest / model_name(bundles["v1"]))
    assert r.returncode == 2 and "no previous version" in r.stderr


def _kill_at_random_moments(bundles, keys, installed_v1, tmp_path, rounds, seed):
    """Install v2 over v1 and SIGKILL it after a random delay spanning the whole install; after each
    kill `current` must name a complete version that verifies (1.0 or 2.0), and a new install works."""
    name = model_name(bundles["v1"])
    exe = Path(sys.executable).parent / "edgeopt"
    cmd = [str(exe), "install", str(bundles["v2"]), "--public-key", str(keys["good"].public_key), "--dest"]
    t0 = time.perf_counter()
    assert subprocess.run(cmd + [str(copy_dest(installed_v1, tmp_path / "timing"))], capture_output=True).returncode == 0
    duration = time.perf_counter() - t0
    rng = random.Random(seed)
    seen = set()
    for i in range(rounds):
        dest = copy_dest(installed_v1, tmp_path / f"d{i}")
        proc = subprocess.Popen(cmd + [str(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0, duration * 1.1))
        os.killpg(proc.pid, signal.SIGKILL)  # the installer and its health-check child
        proc.wait()
        version = verified_current(dest / name, keys["good"].public_key)
        assert version in ("1.0", "2.0")
        seen.add(version)
        if i % 5 == 0:  # the next install recovers from whatever was left behind
            r = subprocess.run(cmd + [str(dest)], capture_output=True, text=True)
            assert r.returncode == (0 if version == "1.0" else 2), r.stderr
            assert verified_current(dest / name, keys["good"].public_key) == "2.0"
    return seen


def test_power_loss_during_install(bundles, keys, installed_v1, tmp_path):
    _kill_at_random_moments(bundles, keys, installed_v1, tmp_path, rounds=10, seed=21)


@pytest.mark.slow
def test_power_loss_during_install_50(bundles, keys, installed_v1, tmp_path):
    seen = _kill_at_random_moments(bundles, keys, installed_v1, tmp_path, rounds=50, seed=2121)
    assert seen == {"1.0", "2.0"}  # the kills landed before and after the switch


def test_predict_and_install_usage_errors(bundles, keys, dest, tmp_path):
    np.savez(tmp_path / "wrong.npz", nope=np.zeros((1, 3), np.float32))
    cases = [
        (("predict", bundles["v1"], "--text", "red shoes"), "not a text model"),
        (("predict", bundles["v1"], "--input", tmp_path / "wrong.npz"), "missing input"),
        (("predict", bundles["v1"]), "either --text"),
        (("predict", tmp_path / "nothing.edgepkg", "--text", "x"), "no such bundle"),
        (("install", bundles["v2"], "--dest", dest), "no --public-key"),
        (("install", tmp_path / "nothing.edgepkg", "--dest", dest, "--allow-unsigned"), "no such bundle"),
        (("install", bundles["v2"], "--dest", dest, "--public-key", tmp_path / "none.pub"), "no such public key"),
        (("rollback", tmp_path / "nothing"), "no such installed model"),
    ]
    before = tree_digest(dest)
    for args, message in cases:
        r = run_cli(*args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert tree_digest(dest) == before


def test_verify_an_installed_version(bundles, keys, dest):
    model_dir = dest / model_name(bundles["v1"])
    r = run_cli("verify", model_dir, "--public-key", keys["good"].public_key, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["signature"] == "verified", r.stderr
    folder = (model_dir / "current").resolve()
    (folder / "stray.txt").write_text("x")
    r = run_cli("verify", model_dir, "--public-key", keys["good"].public_key)
    assert r.returncode == 1 and "stray.txt" in r.stderr


def test_decompression_bomb_limits(bundles, tmp_path):
    """A gzip bundle whose manifest declares more than the limit, and one with too many members."""
    import gzip
    import io

    from edgeopt.runtime.archive import MAX_MEMBERS, extract
    from edgeopt.runtime.errors import BundleError

    gz = tmp_path / "b.edgepkg"
    gz.write_bytes(gzip.compress(bundles["v2"].read_bytes()))
    (tmp_path / "a").mkdir()
    with pytest.raises(BundleError, match="more than the limit"):
        extract(gz, tmp_path / "a", max_bytes=1000)
    assert not any((tmp_path / "a").iterdir())
    many = tmp_path / "many.edgepkg"
    with tarfile.open(many, "w") as tar:
        for i in range(MAX_MEMBERS + 1):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match="more than 10000 members"):
        extract(many, tmp_path / "b")


def test_failing_first_install_leaves_nothing(bundles, keys, tmp_path):
    folder = unpack(bundles["v2"], tmp_path / "x")
    _failing_health(folder, keys)
    bad = retar(folder, tmp_path / "bad.edgepkg")
    dest = tmp_path / "fresh"
    r = run_cli("install", bad, "--dest", dest, "--public-key", keys["good"].public_key)
    assert r.returncode == 1 and "nothing was installed" in r.stderr
    assert sorted(p.name for p in dest.iterdir()) == [".edgeopt.lock"]

"""`edgeopt verify-target OUT --arch aarch64` (issue 33). The fast tests run the command's logic with
the target run replaced by a runner on this machine (no qemu needed); the slow ones run qemu-user
with the aarch64 sysroot (installed once into ~/.cache/edgeopt/aarch64) and skip when qemu 8.1+ is
missing."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def mobile_out(tiny, tmp_path_factory):
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("target") / "cnn"
    assert export_model(load_model(tiny["resnet_pt2"]), out, ExportOptions(targets=("onnx", "mobile"))).passed
    return out


@pytest.fixture()
def out(mobile_out, tmp_path):
    return Path(shutil.copytree(mobile_out, tmp_path / "out"))


def host_runner(job_dir: Path) -> dict:
    """The child in a fresh process of this machine's Python: the target run without emulation."""
    subprocess.run([sys.executable, "-m", "edgeopt.target.child", str(job_dir)], check=True, timeout=300,
                   capture_output=True)
    return {"emulator": "none (this machine)"}


def drifting_runner(scale: float):
    def run(job_dir: Path) -> dict:
        host_runner(job_dir)
        for f in job_dir.glob("*.out.npz"):
            with np.load(f) as z:
                arrays = {k: z[k] * scale for k in z.files}
            np.savez(f, **arrays)
        return {"emulator": "none"}
    return run


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_verdict_recorded_per_artifact(out):
    from edgeopt.target.verify import verify_target

    before = _digests(out)
    r = verify_target(out, runner=host_runner)
    assert r.passed and set(r.artifacts) == {"model.onnx", "mobile/model.ort", "mobile/model.static.ort"}
    after = _digests(out)
    assert {k for k in after if after[k] != before.get(k)} == {"manifest.json"}  # nothing else touched
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["targets"]["aarch64"]["passed"] and "necessary, not sufficient" in manifest["targets"]["aarch64"]["note"]
    for art in manifest["artifacts"]:
        v = art["targets"]["aarch64"]
        assert v["passed"] and v["emulated"] and v["max_abs_diff"] == 0.0
    static = next(a for a in manifest["artifacts"] if a["path"] == "mobile/model.static.ort")
    assert static["targets"]["aarch64"]["samples"] == 2  # the golden batch of 2, one sample at a time


def test_outputs_that_differ_fail(out):
    from edgeopt.target.verify import verify_target

    r = verify_target(out, runner=drifting_runner(1.05))
    assert not r.passed
    assert all(not v["passed"] and v["max_abs_diff"] > 0 for v in r.artifacts.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["targets"]["aarch64"]["passed"] is False


def test_int8_judged_by_the_gate_metric():
    """INT8 on another ISA: beyond the bitwise-ish tolerance but within the gate's --max-drop passes."""
    from edgeopt.target.verify import compare_outputs

    rng = np.random.default_rng(0)
    here = [{"emb": rng.standard_normal((4, 32)).astype(np.float32)}]
    near = [{"emb": here[0]["emb"] + rng.normal(0, 0.08, (4, 32)).astype(np.float32)}]
    art = {"precision": "int8", "verification": {"max_drop": 0.01}}
    v = compare_outputs(art, here, near, {"metric": "cosine", "max_drop": 0.01})
    assert v["passed"] and not v["within_tolerance"] and v["gate_metric"] == "cosine" and 0 < v["drop"] <= 0.01
    far = [{"emb": here[0]["emb"] + rng.normal(0, 0.5, (4, 32)).astype(np.float32)}]
    assert not compare_outputs(art, here, far, {"metric": "cosine"})["passed"]
    flipped = [{"emb": here[0]["emb"][:, ::-1].copy()}]
    top1 = compare_outputs(art, here, flipped, {"metric": "top1", "max_drop": 0.01})
    assert top1["gate_metric"] == "top1" and not top1["passed"]


def _fake_qemu(tmp_path: Path, version: str) -> Path:
    exe = tmp_path / "qemu-aarch64"
    exe.write_text(f"#!/bin/sh\necho 'qemu-aarch64 version {version} (fake)'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.mark.parametrize("how, says", [("missing", "not found: install QEMU user-mode emulation 8.1 or newer"),
                                       ("old", "is QEMU 7.2.0; onnxruntime crashes under QEMU before 8.1")])
def test_no_usable_qemu(out, tmp_path, how, says):
    before = _digests(out)
    env_path = str(tmp_path / "empty-bin")
    (tmp_path / "empty-bin").mkdir()
    args = ["--qemu", _fake_qemu(tmp_path, "7.2.0")] if how == "old" else []
    exe = Path(sys.executable).parent / "edgeopt"
    r = subprocess.run([str(exe), "verify-target", str(out), "--arch", "aarch64", "--cache", str(tmp_path / "c"),
                        *map(str, args)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": env_path})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "apt-get install" in lines[0]
    assert _digests(out) == before and not (tmp_path / "c").exists()


def test_no_onnx_artifact(out):
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"] = [{**manifest["artifacts"][0], "path": "tensorrt/model.fp16.sm90.plan",
                              "format": "tensorrt"}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = _digests(out)
    r = run_cli("verify-target", out, "--arch", "aarch64")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no verified ONNX, ORT or OpenVINO artifact" in r.stderr
    assert _digests(out) == before


def test_not_an_export_folder(tmp_path):
    r = run_cli("verify-target", tmp_path, "--arch", "aarch64")
    assert r.returncode == 2 and "has no manifest.json" in r.stderr


def _qemu_or_skip():
    from edgeopt.errors import UsageError
    from edgeopt.target.sysroot import find_qemu

    try:
        find_qemu("aarch64")
    except UsageError as e:
        pytest.skip(str(e))


@pytest.mark.slow
def test_aarch64_tiny_cnn(out):
    _qemu_or_skip()
    r = run_cli("verify-target", out, "--arch", "aarch64", "--json", timeout=1800)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["passed"] and doc["emulator"]["emulator"].startswith("qemu-user")
    for v in doc["artifacts"].values():
        assert v["machine"] == "aarch64" and v["cosine_min"] >= 0.999


@pytest.mark.slow
def test_aarch64_minilm_int8(minilm_path, tmp_path):
    """The demo's MiniLM, FP32 and INT8, as ONNX and ORT: FP32 within cosine 0.999 of x86, INT8
    within the gate's --max-drop (minutes: the INT8 export, then every artifact under qemu)."""
    _qemu_or_skip()
    out = tmp_path / "minilm"
    r = run_cli("export", minilm_path, "--to", "onnx,mobile", "--int8", "-o", out, timeout=1800)
    assert r.returncode == 0, r.stderr
    r = run_cli("verify-target", out, "--arch", "aarch64", "--json", timeout=3000)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    arts = doc["artifacts"]
    assert {"model.onnx", "model.int8.onnx", "mobile/model.ort", "mobile/model.int8.ort"} <= set(arts)
    for path, v in arts.items():
        assert v["passed"] and v["machine"] == "aarch64"
        if "int8" in path:
            assert v["drop"] <= v["max_drop"]
        else:
            assert v["cosine_min"] >= 0.999

"""Smoke test of the whole path on real click rows (issue 30): a DeepFM-style ranker over the 26
categorical and 13 dense fields of the Criteo sample (../shared/data/ctr-samples/criteo_sample.txt,
200 rows: too few for accuracy claims), through export --int8, bench, package, install and update,
each as a user runs it."""

from __future__ import annotations

import csv
import json

import sys

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_DATA, run_cli

sys.path.insert(0, str(ROOT / "tests"))
import ctr_models  # noqa: E402

CRITEO = SHARED_DATA / "ctr-samples" / "criteo_sample.txt"
ARCH = f"{ROOT / 'tests' / 'ctr_models.py'}:deepfm"
INPUTS = ["--input", "cats:1x26:int64", "--input", "dense:1x13:float32"]


def criteo_rows() -> tuple[dict, int]:
    """Categorical values label-encoded into one id space (0 = empty), dense values log1p'd."""
    if not CRITEO.is_file():
        pytest.skip(f"shared data missing: {CRITEO} (see ../shared/data/SOURCES.md)")
    with open(CRITEO, newline="") as f:
        rows = list(csv.DictReader(f))
    ids: dict[tuple[str, str], int] = {}
    cats = np.array([[ids.setdefault((c, r[c]), len(ids) + 1) if r[c] else 0 for c in (f"C{i}" for i in range(1, 27))]
                     for r in rows], dtype="int64")
    dense = np.array([[np.log1p(max(float(r[f"I{i}"] or 0), 0)) for i in range(1, 14)] for r in rows], "float32")
    labels = np.array([int(r["label"]) for r in rows], dtype="int64")
    return {"cats": cats, "dense": dense, "labels": labels}, len(ids) + 1


def _save(path, rows, sl):
    np.savez(path, **{k: v[sl] for k, v in rows.items()})
    return path


def test_criteo_rows_through_export_int8_bench_package_install_update(tmp_path):
    import torch

    rows, vocab = criteo_rows()
    kwargs = json.dumps({"fields": 26, "vocab": vocab, "dim": 8, "dense": 13, "hidden": 32})
    torch.manual_seed(0)
    model = ctr_models.deepfm(fields=26, vocab=vocab, dim=8, dense=13, hidden=32)
    old = {k: v[:120] for k, v in rows.items()}
    ctr_models.train(model, old, epochs=10, lr=3e-3)
    torch.save(model.state_dict(), tmp_path / "ranker.pt")
    arch = ["--arch", ARCH, "--arch-kwargs", kwargs, *INPUTS]
    calib = _save(tmp_path / "all.npz", rows, slice(None))

    out = tmp_path / "out"
    r = run_cli("export", tmp_path / "ranker.pt", *arch, "--to", "onnx", "-o", out, "--int8", "--calib", calib,
                "--no-speed-check", "--max-drop", "0.05", "--calib-size", "120", "--eval-size", "80")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"][0]["shape"] == ["batch", 26] and m["int8"]["metric"] == "auc"
    int8 = next(a for a in m["artifacts"] if a["path"] == "model.int8.onnx")
    assert int8["embedding_tables"]["int8"] == int8["embedding_tables"]["tables"] >= 1
    assert m["int8"]["bytes"][0]["ratio"] < 1

    r = run_cli("bench", out, "--runtime", "onnxruntime", "--cold-runs", "1", "--repeats", "1", "--seconds", "0.1",
                "--warmup", "0.05", "--no-cache", "--json", tmp_path / "bench.json")
    assert r.returncode == 0, r.stderr
    records = json.loads((tmp_path / "bench.json").read_text())["records"]
    assert {rec["artifact"] for rec in records} >= {"model.onnx", "model.int8.onnx"}
    assert "cold start 1/1" in r.stdout  # stdout is a pipe here, as in a CI log: a line per stage
    assert "--seq-len 64" in r.stderr

    assert run_cli("keygen", "-o", tmp_path / "release").returncode == 0
    bundle = tmp_path / "ranker.edgepkg"
    r = run_cli("package", out, "-o", bundle, "--sign-key", tmp_path / "release.key", "--version", "1.0")
    assert r.returncode == 0, r.stderr
    r = run_cli("install", bundle, "--dest", tmp_path / "dest", "--public-key", tmp_path / "release.pub")
    assert r.returncode == 0, r.stderr

    r = run_cli("update", tmp_path / "ranker.pt", *arch, "--data", _save(tmp_path / "new.npz", rows, slice(120, 200)),
                "--old-data", _save(tmp_path / "old.npz", rows, slice(0, 120)), "--task", "binary", "--epochs", "2",
                "-o", tmp_path / "up", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["metric"] == "auc" and report["output_kind"] == "logits" and report["forgetting"] is not None
    r = run_cli("export", tmp_path / "up", "--to", "onnx", "-o", tmp_path / "up-out")
    assert r.returncode == 0, r.stderr

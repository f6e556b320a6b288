"""edgeopt.runtime, the device runtime: lean imports, runtime choice and fallback, the install-time
cache, checks of installed files, and embed() on a text model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import bundles, keys, tiny_export, unpack  # noqa: F401
from tests.conftest import ROOT, run_cli

FORBIDDEN = ("torch", "click", "rich", "transformers", "onnx", "sentence_transformers", "openvino", "tensorrt",
             "model_signing", "yaml", "safetensors")


@pytest.fixture(scope="module")
def text_bundle(tiny_bert, keys, tmp_path_factory):
    """A 2-layer BERT classifier with MiniLM's real tokenizer: export (ONNX only), package, install."""
    from edgeopt.bundle.build import package
    from edgeopt.bundle.installation import install
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    work = tmp_path_factory.mktemp("text")
    assert export_model(load_model(tiny_bert), work / "out", ExportOptions(targets=("onnx",))).passed
    bundle = package(out=work / "out", bundle=work / "bert.edgepkg", sign_key=keys["good"].private_key,
                     version="1.0").bundle
    result = install(bundle=bundle, dest=work / "dest", public_key=keys["good"].public_key)
    return {"bundle": bundle, "installed": result.current.parent, "export": work / "out"}


LEAN = """
import sys, json
base = set(sys.modules)
import edgeopt.runtime as rt
after_import = set(sys.modules) - base
m = rt.load(sys.argv[1])
m.run(m.tokenize(["red running shoes"]))
e = m.embed(["red running shoes", "blue shirt"])
assert e.shape[0] == 2
new = set(sys.modules) - base
print(json.dumps({"import": sorted(after_import), "all": sorted(new), "runtime": m.runtime}))
"""


def test_runtime_imports_numpy_and_one_runtime_only(text_bundle):
    """A fresh interpreter: import, load an installed model, run and embed; then check sys.modules."""
    r = subprocess.run([sys.executable, "-c", LEAN, str(text_bundle["installed"])], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    top = {m.split(".")[0] for m in doc["all"]}
    third_party = top - set(sys.stdlib_module_names) - {"edgeopt"}
    assert third_party <= {"numpy", "onnxruntime", "tokenizers"}, third_party
    assert not [m for m in doc["all"] if m.split(".")[0] in FORBIDDEN]
    ours = {m for m in doc["all"] if m.startswith("edgeopt")}
    assert ours <= {"edgeopt"} | {m for m in ours if m.startswith("edgeopt.runtime")}, ours
    assert "onnxruntime" not in {m.split(".")[0] for m in doc["import"]}  # the runtime loads at load()
    assert doc["runtime"] == "onnxruntime"


def test_runtime_ships_alone(text_bundle, tmp_path):
    """edgeopt/__init__.py and edgeopt/runtime/ copied on their own (what a device needs) load and
    serve an installed model and run its health check."""
    import shutil

    (tmp_path / "edgeopt").mkdir()
    shutil.copy(ROOT / "edgeopt" / "__init__.py", tmp_path / "edgeopt")
    shutil.copytree(ROOT / "edgeopt" / "runtime", tmp_path / "edgeopt" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", LEAN, str(text_bundle["installed"])], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = (text_bundle["installed"] / "current").resolve()
    r = subprocess.run([sys.executable, "-m", "edgeopt.runtime.health", str(folder)], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["passed"], r.stdout + r.stderr


def test_embed_matches_the_export_and_predict(text_bundle):
    from edgeopt.runtime import load

    model = load(text_bundle["installed"])
    assert model.cache.startswith("install-time")
    plain = load(text_bundle["installed"], use_cache=False)
    texts = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt"]
    np.testing.assert_allclose(model.embed(texts), plain.embed(texts), rtol=1e-4, atol=1e-5)
    from_bundle = load(text_bundle["bundle"])
    np.testing.assert_allclose(from_bundle.embed(texts), plain.embed(texts), rtol=1e-5, atol=1e-6)
    r = run_cli("predict", text_bundle["bundle"], "--text", texts[0], "--json")
    assert r.returncode == 0, r.stderr
    logits = np.array(json.loads(r.stdout)["outputs"]["logits"]["data"], dtype=np.float32)
    np.testing.assert_allclose(logits, plain.embed(texts[:1]), rtol=1e-4, atol=1e-5)


def test_stale_cache_is_ignored(text_bundle, tmp_path):
    import shutil

    from edgeopt.runtime import load

    dest = tmp_path / "dest"
    shutil.copytree(text_bundle["installed"].parent, dest, symlinks=True)
    model_dir = dest / text_bundle["installed"].name
    version = os.readlink(model_dir / "current")
    cache_json = model_dir / ".cache" / version / "cache.json"
    entries = json.loads(cache_json.read_text())
    for e in entries.values():
        e["cpu"] = "another-cpu"
    cache_json.write_text(json.dumps(entries))
    model = load(model_dir)
    assert "stale" in model.cache
    assert model.embed(["organic"]).shape[0] == 1


def test_installed_files_are_checked(text_bundle, tmp_path):
    import shutil

    from edgeopt.runtime import BundleError, load

    dest = tmp_path / "dest"
    shutil.copytree(text_bundle["installed"].parent, dest, symlinks=True)
    folder = (dest / text_bundle["installed"].name / "current").resolve()
    onnx = folder / "model.onnx"
    original = onnx.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    load(folder)  # same size: the cheap default check passes (install checked the hashes)...
    with pytest.raises(BundleError, match="sha256"):
        load(folder, check_hashes=True)  # ...and the full one does not
    onnx.write_bytes(bytes(data[:-10]))
    with pytest.raises(BundleError, match="truncated"):
        load(folder)
    onnx.write_bytes(bytes(original))
    (folder / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        load(folder)


def test_best_runtime_first_and_why_it_fell_back(tiny, tmp_path):
    """An export with ONNX and OpenVINO IR: OpenVINO when it is installed, else ONNX Runtime, and the
    model says what it passed over; forcing a runtime works; the outputs agree."""
    pytest.importorskip("openvino")
    from edgeopt.bundle.build import package
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model
    from edgeopt.runtime import BundleError, load

    assert export_model(load_model(tiny["resnet_pt2"]), tmp_path / "out", ExportOptions()).passed
    bundle = package(out=tmp_path / "out", bundle=tmp_path / "b.edgepkg", version="1").bundle
    best = load(bundle)
    assert best.runtime == "openvino" and best.artifact["path"] == "openvino/model.xml"
    assert best.why == ["tensorrt: no artifact for it"]
    ort = load(bundle, runtime="onnxruntime")
    assert ort.artifact["path"] == "model.onnx"
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    name = best.engine.output_names[0]
    np.testing.assert_allclose(best.run(feeds)[name], ort.run(feeds)[ort.engine.output_names[0]], atol=1e-3)
    with pytest.raises(BundleError, match="not in"):
        load(bundle, artifact="model.int8.onnx")
    folder = unpack(bundle, tmp_path / "x")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] == "openvino"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="onnxruntime: no artifact"):
        load(folder, runtime="onnxruntime")


def test_health_check_prepares_openvino_cache(tiny, tmp_path):
    """install compiles the OpenVINO IR once into DEST/<name>/.cache/<version>/openvino (CACHE_DIR)."""
    pytest.importorskip("openvino")
    from edgeopt.bundle.build import package
    from edgeopt.bundle.installation import install
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model
    from edgeopt.runtime import load

    assert export_model(load_model(tiny["resnet_pt2"]), tmp_path / "out", ExportOptions()).passed
    bundle = package(out=tmp_path / "out", bundle=tmp_path / "b.edgepkg", version="1").bundle
    r = install(bundle=bundle, dest=tmp_path / "dest", allow_unsigned=True)
    assert r.health["runtime"] == "openvino" and r.health["passed"]
    blobs = list((r.current.parent / ".cache" / "1" / "openvino").iterdir())
    assert blobs and load(r.current).cache.startswith("install-time compiled blob")


def test_tensorrt_engine_only_for_its_gpu_and_release(tmp_path):
    """Engines are named for the GPU architecture and TensorRT release that built them; elsewhere the
    runtime passes them over and says why (here: no tensorrt, or no GPU)."""
    from edgeopt.runtime import tensorrt as trt
    from edgeopt.runtime.model import choose

    assert trt.matches("tensorrt/model.int8.sm89-trt10.3.plan", "sm89-trt10.3")
    assert not trt.matches("tensorrt/model.int8.sm89-trt10.3.plan", "sm90-trt10.3")
    assert not trt.matches("tensorrt/model.int8.sm89-trt10.3.plan", "sm89-trt10.4")
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "model.int8.sm89-trt10.3.plan").write_bytes(b"engine")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    manifest = {"artifacts": [{"path": "tensorrt/model.int8.sm89-trt10.3.plan", "format": "tensorrt",
                               "precision": "int8"},
                              {"path": "model.onnx", "format": "onnx", "precision": "fp32"}]}
    art, name, why = choose(tmp_path, manifest, runtime=None)
    if trt.device_tag()[0] != "sm89-trt10.3":
        assert why[0].startswith("tensorrt: ") and art["path"] != manifest["artifacts"][0]["path"]


def test_load_checks_the_signature_when_given_a_key(text_bundle, keys):
    from edgeopt.runtime import BundleError, load

    for path in (text_bundle["installed"], text_bundle["bundle"]):
        assert load(path, public_key=keys["good"].public_key).runtime == "onnxruntime"
        with pytest.raises(BundleError, match="signature"):
            load(path, public_key=keys["other"].public_key)

"""One executor per runtime: export's verification, bench's measured process and the device runtime
(``edgeopt.runtime.load``, which install's health check and serve use) open the same engine class on
the same artifact and get the same numbers; the device now runs the shape buckets export checked."""

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

TITLES = ["red running shoes", "men navy blue slim fit cotton casual shirt"]


@contextlib.contextmanager
def opened_engines():
    """Record (engine class, artifact file) for every engine the device runtime's modules open."""
    from edgeopt.runtime.openvino import OvEngine
    from edgeopt.runtime.ort import OrtEngine

    seen: list[tuple[str, str]] = []
    with pytest.MonkeyPatch.context() as mp:
        for cls in (OrtEngine, OvEngine):
            def init(self, path, *args, _init=cls.__init__, **kwargs):
                seen.append((type(self).__name__, Path(path).name))
                _init(self, path, *args, **kwargs)

            mp.setattr(cls, "__init__", init)
        yield seen


@pytest.fixture(scope="module")
def export(tiny_bert, tmp_path_factory):
    """A 2-layer BERT with MiniLM's tokenizer, exported in this process to ONNX and an OpenVINO IR
    with one checked shape bucket (8 tokens), recording the engines its verification opened."""
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("engines") / "out"
    model = load_model(tiny_bert)
    with opened_engines() as seen:
        result = export_model(model, out, ExportOptions(targets=("onnx", "openvino"), shape_buckets="8"))
    assert result.passed, result.failure
    manifest = json.loads((out / "manifest.json").read_text())
    return SimpleNamespace(out=out, manifest=manifest, opened=list(seen))


def feeds(out: Path, texts=TITLES[:1]) -> dict:
    from edgeopt.runtime.text import TextEncoder

    return TextEncoder(out / "tokenizer", input_names=["input_ids", "attention_mask", "token_type_ids"])(texts)


@pytest.mark.parametrize("artifact,runtime,engine", [("model.onnx", "onnxruntime", "OrtEngine"),
                                                     ("openvino/model.xml", "openvino", "OvEngine")])
def test_export_verification_and_the_device_run_one_engine(export, artifact, runtime, engine):
    import edgeopt.runtime
    from edgeopt.backends import get_runtime

    record = next(a for a in export.manifest["artifacts"] if a["path"] == artifact)
    assert record["verification"]["passed"] and record["verification"]["runtime"] == runtime
    assert (engine, Path(artifact).name) in export.opened  # export verified it with this engine

    device = edgeopt.runtime.load(export.out, artifact=artifact, use_cache=False)
    build = get_runtime(runtime).load(str(export.out / artifact))
    assert device.runtime == runtime
    assert type(device.engine) is type(build.engine) and type(build.engine).__name__ == engine
    for texts in (TITLES[:1], TITLES):
        f = feeds(export.out, texts)
        want, got = build.run(f), device.run(f)
        assert set(want) == set(got) == {s.name for s in build.outputs}
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_bench_measures_the_device_engine_and_its_install_cache(export, tmp_path):
    from edgeopt.bench.child import open_session
    from edgeopt.runtime.buckets import read_from_ir
    from edgeopt.runtime.openvino import OvEngine
    from edgeopt.runtime.ort import OrtEngine

    onnx = str(export.out / "model.onnx")
    plain = open_session({"runtime": "onnxruntime", "path": onnx})
    cold = open_session({"runtime": "onnxruntime", "path": onnx, "cache_dir": str(tmp_path)})
    cached = list(tmp_path.iterdir())
    assert [p.suffix for p in cached] == [".ort"]  # the ORT-format graph install prepares on a device
    warm = open_session({"runtime": "onnxruntime", "path": onnx, "cache_dir": str(tmp_path)})
    assert list(tmp_path.iterdir()) == cached
    f = feeds(export.out)
    assert all(type(s.engine) is OrtEngine for s in (plain, cold, warm))
    for s in (cold, warm):
        np.testing.assert_allclose(s.run(f)["logits"], plain.run(f)["logits"], rtol=1e-5, atol=1e-6)

    ov = open_session({"runtime": "openvino", "path": str(export.out / "openvino" / "model.xml")})
    assert type(ov.engine) is OvEngine
    assert ov.engine.buckets == read_from_ir(export.out / "openvino" / "model.xml") is not None


def test_the_device_runs_the_buckets_export_checked(export):
    import edgeopt.runtime
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.openvino import HOT_CALLS

    xml = export.out / "openvino" / "model.xml"
    record = next(a for a in export.manifest["artifacts"] if a["path"] == "openvino/model.xml")
    assert record["shape_buckets"]["lengths"] == [8]
    model = edgeopt.runtime.load(export.out, runtime="openvino", use_cache=False)
    dynamic = get_runtime("openvino").load(str(xml), buckets=False)
    f = feeds(export.out)
    assert f["input_ids"].shape[1] <= 8
    for _ in range(HOT_CALLS):
        model.run(f)
    model.engine.settle()
    assert model.engine.variants == [(1, 8)] and not model.engine.failed
    got = model.run(f)  # the static variant, padded to 8 tokens and masked
    np.testing.assert_allclose(got["logits"], dynamic.run(f)["logits"], atol=1e-5)


def test_concurrent_runs_of_one_openvino_engine(export):
    """serve runs one model from several inference threads: each gets its own infer request."""
    import edgeopt.runtime

    model = edgeopt.runtime.load(export.out, runtime="openvino", use_cache=False)
    f = feeds(export.out, TITLES)  # batch 2: the dynamic model, no variant
    want = model.run(f)["logits"]
    start = threading.Barrier(4)

    def work(_):
        start.wait(timeout=30)
        return [model.run(f)["logits"] for _ in range(25)]

    with ThreadPoolExecutor(4) as pool:
        results = [r for rows in pool.map(work, range(4)) for r in rows]
    assert len(results) == 100
    for r in results:
        np.testing.assert_allclose(r, want, atol=1e-6)


def test_onnxruntime_provider_choice_says_what_exists(export):
    import onnxruntime as ort

    from edgeopt.backends import get_runtime
    from edgeopt.errors import UnavailableError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(UnavailableError, match=r"requested onnxruntime provider CUDAExecutionProvider, available"):
        get_runtime("onnxruntime").load(str(export.out / "model.onnx"), device="gpu")
    with pytest.raises(UnavailableError, match="unknown onnxruntime device 'tpu'; available: cpu, gpu"):
        get_runtime("onnxruntime").load(str(export.out / "model.onnx"), device="tpu")


def test_export_names_engines_with_the_tag_the_device_matches(monkeypatch):
    """Export names an engine for the GPU nvidia-smi lists and the TensorRT installed; the device
    reads the same two facts through the same functions and picks exactly such engines."""
    from edgeopt.export.tensorrt import engine_filename
    from edgeopt.runtime import tensorrt as trt

    gpus = [{"name": "NVIDIA L4", "memory": "23034 MiB", "compute_capability": "8.9"}]
    monkeypatch.setattr(trt, "nvidia_gpus", lambda: gpus)
    monkeypatch.setattr(trt, "version", lambda: "10.13.0.35")
    name = f"tensorrt/{engine_filename('fp16', gpus[0]['compute_capability'], trt.version())}"
    assert trt.device_tag() == ("sm89-trt10.13", "") and trt.matches(name, trt.device_tag()[0])
    assert not trt.matches(name, trt.engine_tag("9.0", "10.13.0"))
    assert not trt.matches(name, trt.engine_tag("8.9", "10.14.0"))
    monkeypatch.setattr(trt, "nvidia_gpus", lambda: [])
    assert trt.device_tag() == (None, "no NVIDIA GPU (nvidia-smi missing or lists none)")
    monkeypatch.setattr(trt, "version", lambda: None)
    assert trt.device_tag() == (None, "tensorrt is not installed")


def test_tensorrt_specs_are_read_from_the_engine():
    """The TensorRT session's I/O specs, from a stand-in for tensorrt.ICudaEngine (TensorRT 10's
    tensor API); running an engine needs a GPU (tests/test_tensorrt_gpu.py)."""
    from edgeopt.backends.tensorrt import io_specs
    from edgeopt.spec import TensorSpec

    tensors = {"input_ids": ("INT64", (-1, -1)), "pixel": ("HALF", (1, 3, 32, 32)), "logits": ("FLOAT", (-1, 10))}

    class Engine:
        num_io_tensors = len(tensors)

        def get_tensor_name(self, i):
            return list(tensors)[i]

        def get_tensor_dtype(self, name):
            return SimpleNamespace(name=tensors[name][0])

        def get_tensor_shape(self, name):
            return tensors[name][1]

    inputs, outputs = io_specs(Engine(), lambda n: n != "logits")
    assert inputs == [TensorSpec("input_ids", "int64", ("dim0", "dim1")), TensorSpec("pixel", "float16", (1, 3, 32, 32))]
    assert outputs == [TensorSpec("logits", "float32", ("dim0", 10))]


@pytest.mark.gpu
def test_tensorrt_export_and_the_device_run_one_engine(tiny, tmp_path):
    """On a GPU: the engine export verified is the one ``edgeopt.runtime.load`` picks and runs, with
    the same outputs as the build side's TensorRT session."""
    pytest.importorskip("tensorrt")
    import edgeopt.runtime
    from edgeopt.backends import get_runtime
    from edgeopt.backends.tensorrt import nvidia_gpus
    from edgeopt.runtime.tensorrt import TrtEngine
    from tests.conftest import run_cli

    if not nvidia_gpus():
        pytest.skip("no NVIDIA GPU")
    r = run_cli("export", tiny["resnet_pt2"], "-o", tmp_path / "out", "--to", "onnx,tensorrt", "--json")
    assert r.returncode == 0, r.stderr
    plan = next(a for a in json.loads(r.stdout)["artifacts"] if a["format"] == "tensorrt")
    assert plan["verification"]["passed"] and plan["verification"]["runtime"] == "tensorrt"
    device = edgeopt.runtime.load(tmp_path / "out")
    build = get_runtime("tensorrt").load(str(tmp_path / "out" / plan["path"]))
    assert device.runtime == "tensorrt" and device.artifact["path"] == plan["path"]
    assert type(device.engine) is type(build.engine) is TrtEngine
    x = {"x": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    want, got = build.run(x), device.run(x)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])

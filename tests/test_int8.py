"""export --int8 on real tiny models: the gate, the fallback, the manifest, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def calib_npz(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 32, 32)).astype("float32")
    np.savez(d / "calib.npz", x=x)
    np.savez(d / "labelled.npz", x=x, labels=rng.integers(0, 10, 48))
    np.savez(d / "wrong_name.npz", image=x)
    np.savez(d / "wrong_shape.npz", x=x[:, :, :16])
    np.savez(d / "wrong_dtype.npz", x=(x > 0).astype("complex64"))
    bad = x.copy()
    bad[3, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=bad)
    (d / "empty.npz").write_bytes(b"")
    (d / "titles.txt").write_text("red shoes\nblue shirt\n")
    return d


def test_int8_static_passes_gate_and_records_quality(tiny, calib_npz, tmp_path):
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx", "--int8", "--int8-mode", "static",
                "--calib", calib_npz / "calib.npz", "--metric", "cosine", "--max-drop", "0.01", "--json",
                "--eval-batch", "4",  # scored 4 images per call, as if served so
                "--no-speed-check")  # a tiny CNN need not be faster in INT8: this test is about the gate
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    art = next(a for a in manifest["artifacts"] if a["path"] == "model.int8.onnx")
    assert art["precision"] == "int8" and art["quality"]["metric"] == "cosine"
    assert art["quality"]["mean"] >= 0.99 and art["verification"]["passed"]
    # no TensorRT target: asymmetric activations, so onnxruntime folds each ReLU into its conv
    assert art["activations"] == "asymmetric" and not art["tensorrt_ready"]["ok"]
    assert "--to ...,tensorrt" in art["tensorrt_ready"]["reason"]
    assert _float_relus(out / "model.int8.onnx") == 0
    assert (out / "model.int8.onnx").stat().st_size < 0.75 * (out / "model.onnx").stat().st_size
    assert manifest["int8"]["calibration"]["samples"] + manifest["int8"]["calibration"]["eval_samples"] == 48
    assert manifest["int8"]["calibration"]["eval_batch"] == 4
    assert not list(out.glob(".int8-work*"))


def _float_relus(path) -> int:
    """ReLUs left in float after onnxruntime's graph optimizations (a DQ -> ReLU -> Q island each)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node].count("Relu")


def test_tensorrt_target_gets_symmetric_tensorrt_ready_static_int8(tiny, calib_npz, tmp_path):
    """With TensorRT among the targets, static INT8 is symmetric (zero points 0 after the exact
    uint8 -> int8 shift) and passes the TensorRT readiness check, at the cost of float ReLUs in ORT."""
    from edgeopt.data import load_data
    from edgeopt.export.tensorrt import tensorrt_readiness
    from edgeopt.models import load_model
    from edgeopt.optimize.quantize.config import Int8Config
    from edgeopt.optimize.quantize.int8 import Int8Job, quantize_int8

    out = tmp_path / "o"
    assert run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx").returncode == 0
    model = load_model(tiny["resnet_pt2"])
    data = load_data(str(calib_npz / "calib.npz"), io=model.io)
    calib, evald = data.split(0.25, seed=0)
    job = Int8Job(out / "model.onnx", calib, evald, model.io.outputs[0].name, "cosine", want_qdq=True)
    outcome = quantize_int8(job=job, stage=out, cfg=Int8Config(mode="static", max_drop=0.01, openvino=False,
                                                               speed_check=False))
    assert outcome.onnx.name == "static" and outcome.onnx.recipe.activations == "symmetric"
    assert tensorrt_readiness(out / "model.int8.onnx")["ok"]
    assert _float_relus(out / "model.int8.onnx") > 0


def test_impossible_gate_exits_1_and_keeps_fp32(tiny, calib_npz, tmp_path):
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx", "--int8", "--int8-mode", "static",
                "--calib", calib_npz / "calib.npz", "--metric", "mse", "--max-drop", "0")
    assert r.returncode == 1, r.stderr
    assert "INT8 could not meet" in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["model.onnx"]
    cand = manifest["int8"]["candidates"][0]
    assert not cand["passed"] and cand["attempts"] > 1  # it did try falling back
    assert not (out / "model.int8.onnx").exists()


def test_labelled_top1_gate(tiny, calib_npz, tmp_path):
    r = run_cli("export", tiny["resnet_pt2"], "-o", tmp_path / "o", "--to", "onnx", "--int8", "--int8-mode",
                "dynamic", "--calib", calib_npz / "labelled.npz", "--max-drop", "0.2", "--json", "--no-speed-check")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    art = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert art["quality"]["metric"] == "top1" and art["quality"]["labels"] is True
    assert not any("without labels" in n for n in manifest["int8"]["notes"])


def test_top1_without_labels_says_it_gates_on_agreement(tiny, calib_npz, tmp_path):
    """--metric top1 on unlabelled data gates on agreement with FP32's decisions: the manifest and
    the CLI say so instead of calling it accuracy."""
    r = run_cli("export", tiny["resnet_pt2"], "-o", tmp_path / "o", "--to", "onnx", "--int8", "--int8-mode",
                "dynamic", "--calib", calib_npz / "calib.npz", "--metric", "top1", "--max-drop", "0.2",
                "--no-speed-check")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert art["quality"]["labels"] is False
    (note,) = [n for n in manifest["int8"]["notes"] if "without labels" in n]
    assert "agreement with the FP32 model's top-1" in note and "note: --metric top1 without labels" in r.stderr


BAD = {
    "wrong input names": (["--calib", "{d}/wrong_name.npz"], "the model takes"),
    "wrong shapes": (["--calib", "{d}/wrong_shape.npz"], "on axis 2"),
    "wrong dtype": (["--calib", "{d}/wrong_dtype.npz"], "complex64"),
    "NaN": (["--calib", "{d}/nan.npz"], "NaN"),
    "empty file": (["--calib", "{d}/empty.npz"], "is empty"),
    "text for a model without tokenizer": (["--calib", "{d}/titles.txt"], "no tokenizer"),
    "max-drop out of range": (["--calib", "{d}/calib.npz", "--metric", "cosine", "--max-drop", "2"], "out of range"),
    "no calibration data": ([], "--int8 needs --calib"),
    "missing data": (["--calib", "{d}/nope.npz"], "no such data"),
    "unknown metric": (["--calib", "{d}/calib.npz", "--metric", "auroc"], "unknown --metric"),
    "eval batch of 0": (["--calib", "{d}/calib.npz", "--eval-batch", "0"], "--eval-batch"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_int8_input(tiny, calib_npz, tmp_path, case):
    args, expected = BAD[case]
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx", "--int8",
                *[a.format(d=calib_npz) for a in args])
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("W1")]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not out.exists()


def test_auto_times_the_passing_candidates_and_keeps_the_fastest(tiny, calib_npz, tmp_path):
    r = run_cli("export", tiny["resnet_pt2"], "-o", tmp_path / "o", "--to", "onnx", "--int8", "--calib",
                calib_npz / "calib.npz", "--metric", "cosine", "--max-drop", "0.05", "--json", "--no-speed-check")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    passing = [c for c in manifest["int8"]["candidates"] if c["passed"]]
    assert [c["name"] for c in passing] == ["static", "dynamic"]
    assert all(c["p50_ms"] > 0 for c in passing)
    art = next(a for a in manifest["artifacts"] if a["path"] == "model.int8.onnx")
    assert art["int8_mode"] == min(passing, key=lambda c: c["p50_ms"])["name"]


def test_int8_must_beat_fp32_on_this_machine(tmp_path, monkeypatch):
    """Every passing candidate is timed against FP32 in the same run and not kept when it is not
    faster (it still passed the quality gate: "rejected" says why); without the FP32 path
    (--no-speed-check) a single candidate is kept untimed."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize import speed
    from edgeopt.optimize.quantize.candidate import Int8Candidate as Candidate
    from edgeopt.optimize.quantize.speed import fastest as _fastest

    timed = []

    def fake_latency(runs, feeds, **kw):
        timed.append([p for p, _, _ in runs])
        return {p: {"fp32.onnx": 4.0, "islands.onnx": 4.6, "clean.onnx": 3.0, "slow.onnx": 4.4}[p] for p, _, _ in runs}

    monkeypatch.setattr(speed, "compare_latency", fake_latency)
    evald = Dataset([{"x": np.zeros((1, 3), np.float32)}], source="t")
    islands = Candidate("static", Path("islands.onnx"), "onnxruntime", passed=True, fallback_nodes=["a", "b"])
    clean = Candidate("dynamic", Path("clean.onnx"), "onnxruntime", passed=True)
    slow = Candidate("openvino-nncf", Path("slow.onnx"), "openvino", passed=True)
    assert _fastest([clean], evald, None, print) is clean and not timed
    assert _fastest([clean], evald, None, print, fp32=Path("fp32.onnx")) is clean
    assert timed == [["clean.onnx", "fp32.onnx"]] and clean.vs_fp32 == 0.75
    assert _fastest([islands], evald, None, print, fp32=Path("fp32.onnx")) is None
    assert islands.passed and islands.rejected == ("not faster than FP32 (1.15x, needs <= 0.95x) with 2 "
                                                   "FP32 nodes on this machine")
    assert _fastest([slow], evald, None, print, fp32=Path("fp32.onnx")) is None
    assert slow.rejected == "not faster than FP32 (1.10x, needs <= 0.95x) on this machine"
    islands.rejected = None
    assert _fastest([islands, clean], evald, None, print, fp32=Path("fp32.onnx")) is clean
    assert islands.rejected and not clean.rejected
    # the ratio that decided, with the digits that tell it from the threshold (0.954 is not 0.95)
    assert speed.not_faster(0.954) == "not faster than FP32 (0.954x, needs <= 0.95x)"
    assert speed.not_faster(0.95004) == "not faster than FP32 (0.95004x, needs <= 0.95x)"


def test_openvino_int8_slower_than_fp32_is_not_kept_and_the_manifest_says_why(tmp_path, monkeypatch):
    """OpenVINO INT8 that passes the gate but runs slower than the FP32 IR (MiniLM's static INT8
    on an AVX2 CPU without VNNI: 1.39x) is not written; the candidates still record it."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.metrics import Quality
    from edgeopt.optimize.quantize import openvino_rungs as ovl
    from edgeopt.optimize.quantize import speed
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    def fake_nncf(fp32_xml, xml, calib, transformer, preset=None):
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text("nncf")
        xml.with_suffix(".bin").write_text("")
        return xml

    data = Dataset([{"x": np.zeros((1, 3), np.float32)}], source="t")
    monkeypatch.setattr(ovq, "nncf_quantize", fake_nncf)
    monkeypatch.setattr(speed, "compare_latency",
                        lambda runs, feeds, **kw: {p: 5.5 if p.endswith("fp32.xml") else 7.6 for p, _, _ in runs})
    scorer = lambda path, runtime, precision: Quality("cosine", 0.999, 1.0, 0.001, {"min": 0.99})  # noqa: E731
    scorer.data = data
    best, record = ovl.openvino_int8(_ov_context(tmp_path, "", data, scorer, lambda q: True, transformer=False))
    assert best is None and not (tmp_path / "stage" / "openvino" / "model.int8.xml").exists()
    assert [c.name for c in record] == ["openvino-nncf"] and record[0].passed
    assert record[0].rejected == "not faster than FP32 (1.38x, needs <= 0.95x) on this machine"
    assert record[0].to_json()["vs_fp32"] == 1.382


def _ov_context(tmp_path, name, data, scorer, passes, *, transformer=True, fused=True, speed_check=True,
                user_calibration=True, probe_xml=None):
    """OpenVINO's ladder context for a fake FP32 IR, stage and work folders named by ``name``."""
    from edgeopt.optimize.quantize.config import Int8Config
    from edgeopt.optimize.quantize.ladder import LadderContext

    return LadderContext(cfg=Int8Config(speed_check=speed_check), calib=data, scorer=scorer, passes=passes,
                         work=tmp_path / f"work{name}", stage=tmp_path / f"stage{name}", transformer=transformer,
                         fp32_xml=tmp_path / "fp32.xml", fused_attention=fused, user_calibration=user_calibration,
                         probe_xml=probe_xml, log=print)


@pytest.mark.parametrize("probe_ms", [7.6, 4.0])
def test_openvino_transformer_int8_is_probed_first_on_a_cpu_without_int8_dot_products(tmp_path, monkeypatch,
                                                                                        probe_ms):
    """Without VNNI / AMX (int8_acceleration False), a transformer's OpenVINO INT8 is first calibrated
    on PROBE_SAMPLES samples and timed against FP32: when it is slower, nothing is calibrated fully
    or scored and the manifest records the probe with why; when it is faster, the usual ladder runs."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.metrics import Quality
    from edgeopt.optimize.quantize import openvino_rungs as ovl
    from edgeopt.optimize.quantize import speed
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    calibrated, scored = [], []

    def fake_nncf(fp32_xml, xml, calib, transformer, preset=None, bias_correction=True):
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(preset)
        xml.with_suffix(".bin").write_text("")
        calibrated.append(len(calib) if bias_correction else (len(calib), "no bias correction"))
        return xml

    def scorer(path, runtime, precision):
        scored.append(path.parent.name)
        return Quality("cosine", 0.999, 1.0, 0.001, {"min": 0.99})

    data = Dataset([{"x": np.full((1, 3), i, np.float32)} for i in range(40)], source="t")
    scorer.data = data
    monkeypatch.setattr(ovl, "int8_dot_product", lambda: False)
    monkeypatch.setattr(ovq, "nncf_quantize", fake_nncf)
    monkeypatch.setattr(speed, "compare_latency", lambda runs, feeds, **kw: {
        p: 5.5 if p.endswith("fp32.xml") else probe_ms if "probe" in p else 4.1 for p, _, _ in runs})
    best, record = ovl.openvino_int8(_ov_context(tmp_path, "", data, scorer, lambda q: True))
    if probe_ms > 5.5 * speed.MIN_SPEEDUP:  # slower: one cheap calibration, no scoring, FP32 stays
        # the probe is only timed: NNCF's bias correction (slow, no effect on speed) is skipped
        assert best is None and calibrated == [(ovl.PROBE_SAMPLES, "no bias correction")] and scored == []
        assert not (tmp_path / "stage" / "openvino" / "model.int8.xml").exists()
        (probe,) = record
        assert probe.name == "openvino-nncf" and not probe.passed and probe.quality is None
        assert probe.to_json()["vs_fp32"] == 1.382 and probe.to_json()["probe"]["calibration_samples"] == 8
        assert probe.rejected.startswith("not faster than FP32 (1.38x, needs <= 0.95x) on this machine")
    else:  # faster: the full calibration (all 40 samples), scored and timed as always
        assert calibrated == [(ovl.PROBE_SAMPLES, "no bias correction"), 40]
        assert scored == ["nncf-performance"] and record == [best]
        assert best.passed and best.recipe.preset == "performance" and best.vs_fp32 == 0.745
    # calibrated already (in the background, background_probe): only timed here
    calibrated.clear()
    ready = tmp_path / "bg-probe" / "model.xml"
    ovl.openvino_int8(_ov_context(tmp_path, "3", data, scorer, lambda q: True, probe_xml=ready))
    assert calibrated == ([] if probe_ms > 5.5 * speed.MIN_SPEEDUP else [40])
    # with an INT8 dot-product instruction, or with --no-speed-check, no probe
    calibrated.clear()
    monkeypatch.setattr(ovl, "int8_dot_product", lambda: True)
    ovl.openvino_int8(_ov_context(tmp_path, "2", data, scorer, lambda q: True))
    assert calibrated == [40]


def test_openvino_dynamic_ladder_stops_at_the_first_passing_group(tmp_path, monkeypatch):
    """OpenVINO dynamic INT8 tries activation groups from large (fast) to small (accurate) and keeps
    the first that passes; with dynamic_first it is tried before NNCF (never reached here)."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.metrics import Quality
    from edgeopt.optimize.quantize import openvino_rungs as ovl
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    saved = []

    def fake_save(model, xml, group):
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(str(group))
        xml.with_suffix(".bin").write_text("")
        saved.append(group)
        return xml

    class FakeScorer:
        data = Dataset([{"x": np.zeros((1, 3), np.float32)}], source="t")

        def __call__(self, path, runtime, precision):
            drop = {128: 0.01, 64: 0.004, 32: 0.001}[int(path.read_text())]
            return Quality("cosine", 1 - drop, 1.0, drop, {"min": 0.99})

    monkeypatch.setattr(ovq, "compress_int8", lambda xml: "model")
    monkeypatch.setattr(ovq, "save_dynamic", fake_save)
    monkeypatch.setattr(ovq, "nncf_quantize", lambda *a, **k: pytest.fail("NNCF tried after dynamic passed"))
    passes = lambda q: q.drop <= 0.005  # noqa: E731
    best, _ = ovl.openvino_int8(_ov_context(tmp_path, "", FakeScorer.data, FakeScorer(), passes,
                                            user_calibration=False, speed_check=False))
    assert saved == [128, 64] and best.name == "openvino-dynamic" and best.recipe.group_size == 64
    assert best.path == tmp_path / "stage" / "openvino" / "model.int8.xml" and best.path.read_text() == "64"
    assert [v["activation_group_size"] for v in best.variants] == [64]


def test_openvino_nncf_tries_symmetric_activations_before_the_transformer_default(tmp_path, monkeypatch):
    """A transformer's NNCF INT8 tries the "performance" preset (symmetric activations, faster)
    first, and NNCF's transformer default "mixed" only when that misses the gate; the kept IR's
    candidate names its preset. Dynamic INT8 comes after both."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.metrics import Quality
    from edgeopt.optimize.quantize import openvino_rungs as ovl
    from edgeopt.optimize.quantize import openvino_nncf as ovq

    tried = []

    def fake_nncf(fp32_xml, xml, calib, transformer, preset=None):
        assert transformer
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(preset)
        xml.with_suffix(".bin").write_text("")
        tried.append(preset)
        return xml

    data = Dataset([{"x": np.zeros((1, 3), np.float32)}], source="t")
    monkeypatch.setattr(ovq, "nncf_quantize", fake_nncf)
    monkeypatch.setattr(ovq, "compress_int8", lambda xml: pytest.fail("dynamic tried after NNCF passed"))
    for drops, want in (({"performance": 0.001}, ["performance"]),
                        ({"performance": 0.02, "mixed": 0.003}, ["performance", "mixed"])):
        tried.clear()

        def scorer(path, runtime, precision, drops=drops):
            drop = drops[path.read_text()]
            return Quality("cosine", 1 - drop, 1.0, drop, {"min": 0.99})

        scorer.data = data
        best, _ = ovl.openvino_int8(_ov_context(tmp_path, want[-1], data, scorer, lambda q: q.drop <= 0.005,
                                                speed_check=False))
        assert tried == want and best.name == "openvino-nncf" and best.recipe.preset == want[-1]
        assert (tmp_path / f"stage{want[-1]}" / "openvino" / "model.int8.xml").read_text() == want[-1]
        assert [v["nncf_preset"] for v in best.variants] == want


def test_export_says_fp32_is_faster_when_the_only_passing_int8_was_slower(tiny, tmp_path, monkeypatch):
    """The export's failure names the reason when every passing INT8 candidate lost to FP32 (and a
    probe's rejection is not that reason); the CLI exits 1 with it."""
    from click.testing import CliRunner

    from edgeopt.cli import main
    from edgeopt.export import api, int8_artifacts, pipeline
    from edgeopt.manifest import Manifest
    from edgeopt.optimize.quantize.candidate import Int8Candidate
    from edgeopt.optimize.quantize.int8 import Int8Outcome

    probe = Int8Candidate("openvino-nncf", Path("p.xml"), "openvino", rejected="slow probe", probe_samples=8)
    slow = Int8Candidate("static", Path("s.onnx"), "onnxruntime", rejected="not faster than FP32 (1.95x) with 17 "
                                                                            "FP32 nodes")
    failure = int8_artifacts._failure(Int8Outcome("nn", 0.03, [probe, slow]))
    assert "is not faster than FP32 (1.95x) with 17 FP32 nodes" in failure and "FP32 is the faster" in failure
    assert "could not meet --max-drop 0.03 on nn" in int8_artifacts._failure(Int8Outcome("nn", 0.03, [probe]))
    manifest = Manifest(model={"name": "m"}, inputs=[], outputs=[])
    monkeypatch.setattr(api, "export", lambda *a, **k: pipeline.ExportResult(tmp_path / "o", manifest, True,
                                                                             int8_passed=False, failure=failure))
    r = CliRunner().invoke(main, ["export", str(tiny["resnet_pt2"]), "-o", str(tmp_path / "o"), "--to", "onnx",
                                  "--int8", "--calib", "x.npz", "--json"])
    assert r.exit_code == 1, r.output
    assert failure in r.output


def test_the_probe_calibrates_in_the_background_only_where_it_will_be_used(tmp_path, monkeypatch):
    """background_probe starts the probe's NNCF calibration (8 samples, no bias correction) when
    OpenVINO's first way will be probed: a text model whose IR has fused attention, the user's
    data, the speed check on, a CPU without an INT8 dot product; else nothing."""
    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize import openvino_rungs as ovl
    from edgeopt.optimize.quantize import openvino_nncf as ovq
    from edgeopt.optimize.quantize.config import Int8Config

    started = []
    monkeypatch.setattr(ovq, "InBackground", lambda *a, **k: started.append((a, k)) or "probe")
    monkeypatch.setattr(ovl, "int8_dot_product", lambda: False)
    calib = Dataset([{"x": np.full((1, 3), i, np.float32)} for i in range(40)], source="t")
    xml = tmp_path / "openvino" / "model.xml"

    def probe(fp32_xml=xml, cfg=Int8Config(), transformer=True, fused=True, user=True):
        return ovl.background_probe(fp32_xml=fp32_xml, stage=tmp_path, calib=calib, cfg=cfg, transformer=transformer,
                                    fused_attention=fused, user_calibration=user, log=print)

    assert probe() == "probe"
    (args, kwargs), = started
    assert args[0] == xml and len(args[2]) == ovl.PROBE_SAMPLES and kwargs["bias_correction"] is False
    for cfg, text, user in ((Int8Config(speed_check=False), True, True), (Int8Config(openvino=False), True, True),
                            (Int8Config(), False, True), (Int8Config(), True, False)):
        assert probe(cfg=cfg, transformer=text, user=user) is None
    assert probe(fp32_xml=None) is None and probe(fused=False) is None
    monkeypatch.setattr(ovl, "int8_dot_product", lambda: True)
    assert probe() is None
    assert len(started) == 1


def test_nncf_in_background_writes_the_ir_quietly(tmp_path, capfd):
    """openvino.InBackground runs nncf_quantize in a fresh interpreter, its progress bars kept off
    this terminal; result() gives the IR, and runs it here when the process failed."""
    import openvino as ov
    import torch

    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize import openvino_nncf as ovq
    from tests.tiny_models import resnet_tiny

    fp32 = tmp_path / "fp32.xml"
    ov.save_model(ov.convert_model(resnet_tiny().eval(), example_input=torch.zeros(1, 3, 32, 32)), str(fp32),
                  compress_to_fp16=False)
    name = ov.Core().read_model(str(fp32)).inputs[0].get_any_name()
    rng = np.random.default_rng(0)
    calib = Dataset([{name: rng.standard_normal((1, 3, 32, 32)).astype("float32")} for _ in range(8)], source="t")
    job = ovq.InBackground(fp32, tmp_path / "bg" / "model.xml", calib, transformer=False)
    xml = job.result()
    assert xml == tmp_path / "bg" / "model.xml" and "FakeQuantize" in xml.read_text()
    seen = capfd.readouterr()
    assert "Statistics collection" not in seen.out + seen.err
    broken = ovq.InBackground(fp32, tmp_path / "bg2" / "model.xml", calib, transformer=False, preset="no such")
    with pytest.raises(KeyError):  # the process failed, and so does the run here, in the open
        broken.result()
    job.cancel()


def _matmul_model(path, convs: int = 0):
    """A two-MatMul MLP (x [b, 256] -> 8), or ``convs`` 1x1 Conv layers only (no MatMul)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if convs:
        nodes = [helper.make_node("Conv", [f"c{i}", f"W{i}"], [f"c{i + 1}"], name=f"conv{i}") for i in range(convs)]
        inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), f"W{i}")
                 for i in range(convs)]
        io = (helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 4, 8, 8]),
              helper.make_tensor_value_info(f"c{convs}", TensorProto.FLOAT, [1, 4, 8, 8]))
    else:
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"), helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")]
        inits = [numpy_helper.from_array((rng.standard_normal((256, 64)) * 0.1).astype(np.float32), "W1"),
                 numpy_helper.from_array((rng.standard_normal((64, 8)) * 0.1).astype(np.float32), "W2")]
        io = (helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 256]),
              helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8]))
    model = helper.make_model(helper.make_graph(nodes, "m", [io[0]], [io[1]], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("block", [32, 128])
def test_blockwise_int8_turns_each_weight_matmul_into_matmulnbits(tmp_path, block):
    """ort.quantize_blockwise: onnxruntime's MatMulNBits with 8-bit weights and int8 compute; close
    to FP32, the root logger as it was (the quantizer's module calls logging.basicConfig on import:
    checked in a fresh interpreter, as pytest's own handlers would hide it), and nothing written for
    a model without a MatMul weight."""
    import subprocess
    import sys

    import onnx
    import onnxruntime as rt

    from edgeopt.optimize.quantize import ort

    fp32 = _matmul_model(tmp_path / "mlp.onnx")
    code = ("import logging, sys; from pathlib import Path; from edgeopt.optimize.quantize import ort; "
            f"n = ort.quantize_blockwise(Path(sys.argv[1]), Path(sys.argv[2]), {block}); root = logging.getLogger(); "
            "print(n, len(root.handlers), root.level)")
    r = subprocess.run([sys.executable, "-c", code, str(fp32), str(tmp_path / "b.onnx")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.split() == ["2", "0", str(30)], r.stdout + r.stderr  # WARNING, no handler
    assert "INFO" not in r.stderr, r.stderr
    model = onnx.load(str(tmp_path / "b.onnx"))
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits", "Relu", "MatMulNBits"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    assert attrs["bits"] == 8 and attrs["block_size"] == block and attrs["accuracy_level"] == 4
    x = np.random.default_rng(1).standard_normal((4, 256)).astype(np.float32)
    ref = rt.InferenceSession(str(fp32)).run(None, {"x": x})[0]
    out = rt.InferenceSession(str(tmp_path / "b.onnx")).run(None, {"x": x})[0]
    assert np.abs(out - ref).max() < 0.02 * np.abs(ref).max()
    assert ort.quantize_blockwise(_matmul_model(tmp_path / "cnn.onnx", convs=2), tmp_path / "c.onnx", block) == 0
    assert not (tmp_path / "c.onnx").exists()


def test_blockwise_ladder_stops_at_the_first_passing_block_size(tmp_path, monkeypatch):
    """The blockwise rung tries blocks of 128, 64, 32 (fast to accurate) and keeps the first that
    passes, deleting the others; a model whose weight nodes are mostly not MatMuls is not tried."""
    from edgeopt.optimize.metrics import Quality
    from edgeopt.optimize.quantize import ort, ort_rungs
    from edgeopt.optimize.quantize.config import Int8Config
    from edgeopt.optimize.quantize.ladder import LadderContext

    built = []

    def fake_blockwise(src, out, block):
        out.write_text(str(block))
        built.append(block)
        return 10

    def score(path):
        drop = {128: 0.01, 64: 0.004, 32: 0.001}[int(path.read_text())]
        return Quality("cosine", 1 - drop, 1.0, drop, {"min": 0.99})

    monkeypatch.setattr(ort, "quantize_blockwise", fake_blockwise)
    passes = lambda q: q.drop <= 0.005  # noqa: E731

    def blockwise(passes, n_nodes, mode="auto"):
        return ort_rungs._blockwise(LadderContext(
            cfg=Int8Config(mode=mode), calib=None, scorer=score, passes=passes, work=tmp_path, stage=tmp_path,
            fp32_onnx=tmp_path / "fp32.onnx", nodes=[f"n{i}" for i in range(n_nodes)], log=print))

    best = blockwise(passes, 12)
    assert built == [128, 64] and best.name == "blockwise" and best.passed and best.attempts == 2
    assert best.recipe.block_size == 64 and best.quantizable_nodes == 12 and best.runtime == "onnxruntime"
    assert {"block_size": 64, "quantizable_nodes": 12}.items() <= best.to_json().items()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blockwise-64.onnx"]
    strict = blockwise(lambda q: q.drop <= 1e-4, 12)
    assert not strict.passed and strict.attempts == 3 and strict.recipe.block_size == 32  # the closest
    assert blockwise(passes, 21) is None  # 10 of 21
    assert not (tmp_path / "blockwise-128.onnx").exists()
    asked = blockwise(passes, 21, mode="blockwise")
    assert asked.passed and asked.recipe.block_size == 64  # --int8-mode blockwise: tried all the same


def test_blockwise_mode_on_a_model_without_matmuls_is_a_one_line_error(tiny, calib_npz, tmp_path):
    """--int8-mode blockwise converts MatMul weights only: on a CNN (convolutions and a Gemm head)
    it is bad input, exit 2, nothing written."""
    out = tmp_path / "o"
    r = run_cli("export", tiny["resnet_pt2"], "-o", out, "--to", "onnx", "--int8", "--int8-mode", "blockwise",
                "--calib", calib_npz / "calib.npz")
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("edgeopt: error")]
    assert len(err) == 1 and "--int8-mode blockwise" in err[0] and "Traceback" not in r.stderr
    assert not out.exists()

"""CTR rankers (issue 30): fixed categorical fields kept as given, click-model gates that can fail,
update with probability outputs. Models: tests/ctr_models.py."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from edgeopt.errors import UsageError
from tests.conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "tests"))
import ctr_models  # noqa: E402

ARCH = f"{ROOT / 'tests' / 'ctr_models.py'}"
RANKER_INPUTS = [a for spec in ctr_models.DEEPFM_INPUTS for a in ("--input", spec)]


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Trained DeepFM rankers (one ending in logits, one in a sigmoid) on synthetic click rows, with
    old rows (what they learnt) and new rows (ids they have not seen)."""
    import torch

    folder = tmp_path_factory.mktemp("ctr")
    old = ctr_models.click_rows(2000, seed=1)
    new = ctr_models.click_rows(1000, seed=2, shift=50)
    np.savez(folder / "old.npz", **old)
    np.savez(folder / "new.npz", **new)
    for kind in ("logits", "probs"):
        torch.manual_seed(0)
        model = ctr_models.train(ctr_models.deepfm(probs=kind == "probs"), old, probs=kind == "probs")
        torch.save(model.state_dict(), folder / f"deepfm_{kind}.pt")
    return folder


def _arch_args(kind="logits"):
    return ["--arch", f"{ARCH}:deepfm", "--arch-kwargs", json.dumps({"probs": kind == "probs"}), *RANKER_INPUTS]


# --- the shape a user gives is kept -------------------------------------------------------------

def test_ranker_exports_with_its_8_fields_and_onnx_matches_torch(clicks, tmp_path):
    import onnxruntime as ort
    import torch

    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "--to", "onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"][0] == {"name": "cats", "dtype": "int64", "shape": ["batch", 8]}
    sess = ort.InferenceSession(str(out / "model.onnx"))
    assert [i.shape for i in sess.get_inputs()][0][1] == 8
    rows = ctr_models.click_rows(64, seed=5)
    model = ctr_models.deepfm()
    model.load_state_dict(torch.load(clicks / "deepfm_logits.pt"))
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(rows["cats"]), torch.from_numpy(rows["dense"])).numpy()
    got = sess.run(None, {"cats": rows["cats"], "dense": rows["dense"]})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


# --- gates that can fail on one-column models ----------------------------------------------------

def test_auc_matches_scikit_learn_and_an_inverted_model_fails_it():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from edgeopt.optimize.metrics import evaluate, roc_auc

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    ref = (labels + rng.normal(0, 1.0, 400)).round(1).reshape(-1, 1)  # ties included
    assert roc_auc(labels, ref[:, 0]) == pytest.approx(sklearn_metrics.roc_auc_score(labels, ref[:, 0]))
    q = evaluate("auc", ref, -ref, labels)  # an INT8 model that inverted every score
    assert q.reference > 0.6 and q.drop > 0.2
    probs = 1 / (1 + np.exp(-ref))
    ll = evaluate("logloss", ref, ref, labels)
    assert ll.value == pytest.approx(sklearn_metrics.log_loss(labels, probs[:, 0])) and ll.drop == 0


def test_top1_refuses_a_single_column():
    from edgeopt.optimize.metrics import evaluate

    with pytest.raises(UsageError, match="one-column"):
        evaluate("top1", np.zeros((4, 1)), np.zeros((4, 1)), np.array([0, 1, 0, 1]))


def test_int8_of_a_click_model_gates_on_auc_by_default(clicks, tmp_path):
    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "--to", "onnx", "-o", out, "--int8",
                "--calib", clicks / "old.npz", "--calib-size", "256", "--eval-size", "256", "--no-speed-check",
                "--max-drop", "0.05")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["int8"]["metric"] == "auc"
    int8 = [a for a in m["artifacts"] if a["precision"] == "int8"]
    assert int8 and int8[0]["quality"]["metric"] == "auc" and int8[0]["quality"]["reference"] > 0.6


# --- update --task binary with probability outputs -----------------------------------------------

def test_detect_output_kind():
    from edgeopt.update.metrics import detect_output_kind, value

    assert detect_output_kind(np.array([[0.1], [0.9]])) == "probs"
    assert detect_output_kind(np.array([[-2.0], [0.5]])) == "logits"
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.2, 0.3, 0.6, 0.7])  # all above 0: thresholding at 0 would score the positive rate
    assert value("accuracy", "binary", probs, labels, "probs") == 1.0
    assert value("accuracy", "binary", probs, labels, "logits") == 0.5


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_update_binary_reads_the_output_kind_and_its_gate_can_trip(clicks, tmp_path, kind):
    from edgeopt.errors import GateError
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    common = dict(model=clicks / f"deepfm_{kind}.pt", arch=f"{ARCH}:deepfm", arch_kwargs={"probs": kind == "probs"},
                  inputs=[parse_input(s) for s in ctr_models.DEEPFM_INPUTS], data=clicks / "new.npz",
                  old_data=clicks / "old.npz", task="binary", progress=False)
    r = update(out=tmp_path / "out", method="lwf", epochs=2, **common)
    rep = r.report
    assert rep.output_kind == kind and rep.metric == "auc"
    assert rep.before.old["auc"] > 0.7  # a trained model, scored on the scale it outputs
    pos_rate = float(np.load(clicks / "old.npz")["labels"].mean())
    assert abs(rep.before.old["accuracy"] - max(pos_rate, 1 - pos_rate)) > 0.02
    # a large learning rate on the new rows only: the gate must be able to trip
    with pytest.raises(GateError, match="forgot too much"):
        update(out=tmp_path / "out2", method="finetune", lr=0.05, epochs=3, max_forgetting=0.001, **common)
    assert not (tmp_path / "out2").exists()


# --- ids stay in range; bad input -------------------------------------------------------------------

def _save(tmp_path, model, name):
    import torch

    torch.save(model.state_dict(), tmp_path / name)
    return tmp_path / name


def test_ids_drawn_below_the_table_a_small_vocabulary_exports(tmp_path):
    """A 5-row table: the trace example, probe and verification samples draw ids 0..4 (not 0..9)."""
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    path = _save(tmp_path, ctr_models.deepfm(vocab=5), "v5.pt")
    model = load_model(path, arch=f"{ARCH}:deepfm", arch_kwargs={"vocab": 5},
                       inputs=[parse_input(s) for s in ctr_models.DEEPFM_INPUTS])
    assert model.metadata["id_limits"].exact == {"cats": 5}
    assert all(f["cats"].max() < 5 for f in model.sample_feeds())
    r = run_cli("export", path, "--arch", f"{ARCH}:deepfm", "--arch-kwargs", '{"vocab": 5}', *RANKER_INPUTS,
                "--to", "onnx", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    onnx_source = load_model(tmp_path / "out" / "model.onnx")  # an .onnx source: bounds from its Gathers
    assert onnx_source.metadata["id_limits"].exact == {"cats": 5}
    assert all(f["cats"].max() < 5 for f in onnx_source.sample_feeds())


def test_shared_table_with_offsets_bounds_each_field_by_its_own_rows(tmp_path):
    """DCN-style offsets into one table (the model matrix's dcn): each field owns vocab rows. With
    5 ids per field the old per-input bound (0..9, capped by the 40-row table) sent the last field
    past the table and the model was refused at load."""
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    inputs = [parse_input(s) for s in ctr_models.DEEPFM_INPUTS]
    for vocab in (100, 5):
        path = _save(tmp_path, ctr_models.dcn(vocab=vocab), f"dcn{vocab}.pt")
        limits = load_model(path, arch=f"{ARCH}:dcn", arch_kwargs={"vocab": vocab}, inputs=inputs).metadata["id_limits"]
        assert limits.exact == {"cats": vocab} and limits.ranges == {"cats": vocab}


DIMS = (3, 50, 7, 1000, 4, 20, 9, 2)  # each field's own number of ids (DeepCTR / pytorch-fm offsets)


def test_ids_stay_below_each_columns_own_table(tmp_path):
    """``cats`` of 8 fields with 3 .. 1000 ids each, offset into one table: every sample edgeopt makes
    (probe, trace, verification; bench feeds and golden inputs from the exported graphs) keeps
    each column below its own field's size, and user data past a field's size is named by column."""
    from edgeopt.bench.child import make_feeds
    from edgeopt.bundle.golden import make_inputs
    from edgeopt.models import load_model
    from edgeopt.models.graph_ids import index_limits
    from edgeopt.models.ids import check_ids
    from edgeopt.spec import parse_input

    kwargs = {"field_dims": list(DIMS)}
    path = _save(tmp_path, ctr_models.dcn(**kwargs), "dcn.pt")
    model = load_model(path, arch=f"{ARCH}:dcn", arch_kwargs=kwargs,
                       inputs=[parse_input(s) for s in ctr_models.DEEPFM_INPUTS])
    limits = model.metadata["id_limits"]
    assert limits.exact == {"cats": DIMS} and limits.ranges == {"cats": DIMS}
    for feeds in model.sample_feeds():
        assert (feeds["cats"] < np.array(DIMS)).all() and feeds["cats"][:, 3].max() > 9  # not the 0..9 default
    out = tmp_path / "out"
    r = run_cli("export", path, "--arch", f"{ARCH}:dcn", "--arch-kwargs", json.dumps(kwargs), *RANKER_INPUTS,
                "-o", out)
    assert r.returncode == 0, r.stderr
    assert index_limits(out / "model.onnx", "onnx") == {"cats": DIMS}
    assert index_limits(out / "openvino" / "model.xml", "openvino") == {"cats": DIMS}
    manifest = json.loads((out / "manifest.json").read_text())
    specs = [parse_input(s) for s in ctr_models.DEEPFM_INPUTS]
    bench = make_feeds(specs, batch=64, seq_len=8, limits={"cats": list(DIMS)})  # as JSON hands it to the child
    golden = make_inputs(out, manifest, None)
    for feeds, top in ((bench, np.array(DIMS)), (golden, np.minimum(DIMS, 100))):  # golden ids stay under 100
        assert (feeds["cats"] >= 0).all() and (feeds["cats"] < top).all()
    bad = {"cats": np.array([[2, 0, 0, 0, 0, 0, 0, 1], [0, 0, 6, 0, 0, 0, 0, 2]]), "dense": np.zeros((2, 6), "f4")}
    with pytest.raises(UsageError, match=r"input cats \(column 7\) holds id 2, but the embedding table it indexes "
                                         r"has 2 rows"):
        check_ids([bad], limits.exact, "calib.npz")


def test_ids_in_a_float_tensor_load_with_whole_number_samples(tmp_path):
    path = _save(tmp_path, ctr_models.float_ids(), "fid.pt")
    r = run_cli("export", path, "--arch", f"{ARCH}:float_ids", "--input", "x:1x4:float32", "--to", "onnx",
                "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr


def test_the_input_check_runs_on_the_users_rows_when_there_are_some(tmp_path):
    """Codes 100..119 in a float tensor: made-up samples (normal floats, whole numbers 0..9) are
    not codes, so without data the load is refused; with labelled rows the check runs on them, the
    model's samples are those rows, and export (ONNX verified on them) and INT8 go through."""
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    path = _save(tmp_path, ctr_models.coded_ids(), "coded.pt")
    rng = np.random.default_rng(0)
    x = (100 + rng.integers(0, 20, (300, 4))).astype("float32")
    np.savez(tmp_path / "rows.npz", x=x, labels=(x[:, 0] > 110).astype("int64"))
    args = ["--arch", f"{ARCH}:coded_ids", "--input", "x:1x4:float32", "--to", "onnx"]
    r = run_cli("export", path, *args, "-o", tmp_path / "refused")
    assert r.returncode == 2 and "rejected the inputs" in r.stderr and not (tmp_path / "refused").exists()
    model = load_model(path, arch=f"{ARCH}:coded_ids", inputs=[parse_input("x:1x4:float32")],
                       rows=tmp_path / "rows.npz")
    assert [f["x"].tolist() for f in model.sample_feeds()] == [x[:1].tolist(), x[:3].tolist()]
    out = tmp_path / "out"
    r = run_cli("export", path, *args, "-o", out, "--int8", "--calib", tmp_path / "rows.npz", "--calib-size", "64",
                "--eval-size", "64", "--no-speed-check", "--max-drop", "0.05")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["artifacts"][0]["verification"]["passed"] and m["int8"]["metric"] == "auc"
    # update takes --data as those rows too: the model loads and trains on them
    from edgeopt.update import update

    r = update(model=path, arch=f"{ARCH}:coded_ids", inputs=["x:batchx4:float32"], data=tmp_path / "rows.npz",
               out=tmp_path / "updated", method="finetune", epochs=1, eval_size=60, progress=False)
    assert r.report.task == "binary" and (tmp_path / "updated" / "report.json").is_file()


def test_a_size_that_disagrees_with_the_model_names_input_size_and_need(clicks, tmp_path):
    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", "--arch", f"{ARCH}:deepfm", "--input", "cats:1x9:int64",
                "--input", "dense:1x6:float32", "-o", out)
    assert r.returncode == 2 and not out.exists()
    line = r.stderr.strip().splitlines()[-1]
    assert "cats" in line and "is 9, the model needs 8" in line and "Traceback" not in r.stderr


def test_ids_past_a_table_in_calibration_data_are_one_line(clicks, tmp_path):
    rows = dict(np.load(clicks / "old.npz"))
    rows["cats"][::3, 3] = 150
    np.savez(tmp_path / "bad.npz", **rows)
    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "--to", "onnx", "-o", out, "--int8",
                "--calib", tmp_path / "bad.npz")
    assert r.returncode == 2 and not out.exists()
    line = r.stderr.strip().splitlines()[-1]
    assert "input cats holds id 150" in line and "100 rows" in line


# --- dict inputs -------------------------------------------------------------------------------------

DICT_ARGS = [a for spec in ctr_models.DICT_INPUTS for a in ("--input", spec)]


def _dict_rows(n, seed, lo=0):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(7).normal(0, 1, 50)
    rows = {k: (lo + rng.integers(0, 25, n)).astype("int64") for k in ("user_id", "item_id", "cate_id")}
    rows["dense"] = rng.standard_normal((n, 4)).astype("float32")
    logit = w[rows["user_id"]] + w[rows["item_id"]] + rows["dense"][:, 0]
    rows["labels"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return rows


@pytest.fixture(scope="module")
def dict_model(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("dict")
    torch.manual_seed(0)
    torch.save(ctr_models.dict_ranker().state_dict(), folder / "dict.pt")
    np.savez(folder / "old.npz", **_dict_rows(600, 1))
    np.savez(folder / "new.npz", **_dict_rows(300, 2, lo=25))
    return folder


def test_dict_input_model_exports_and_matches_torch(dict_model, tmp_path):
    import onnxruntime as ort
    import torch

    out = tmp_path / "out"
    r = run_cli("export", dict_model / "dict.pt", "--arch", f"{ARCH}:dict_ranker", *DICT_ARGS, "--to", "onnx",
                "-o", out)
    assert r.returncode == 0, r.stderr
    rows = _dict_rows(16, 3)
    feeds = {k: v for k, v in rows.items() if k != "labels"}
    model = ctr_models.dict_ranker()
    model.load_state_dict(torch.load(dict_model / "dict.pt"))
    with torch.no_grad():
        ref = model.eval()({k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("args, expect", [
    ([*DICT_ARGS, "--input", "extra:1:int64"], "never reads x['extra']"),
    ([a for s in ctr_models.DICT_INPUTS if not s.startswith("cate_id") for a in ("--input", s)],
     "reads x['cate_id'], which no --input names"),
])
def test_dict_input_names_that_do_not_match_the_forward(dict_model, tmp_path, args, expect):
    out = tmp_path / "out"
    r = run_cli("export", dict_model / "dict.pt", "--arch", f"{ARCH}:dict_ranker", *args, "-o", out)
    assert r.returncode == 2 and not out.exists(), r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr


def test_a_pt2_of_a_dict_input_model_loads_with_its_keys(dict_model, tmp_path):
    import torch

    from edgeopt.models import load_model

    model = ctr_models.dict_ranker().eval()
    x = {k: torch.from_numpy(v) for k, v in _dict_rows(4, 0).items() if k != "labels"}
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(model, (x,), dynamic_shapes=({k: {0: batch} for k in x},))
    torch.export.save(ep, str(tmp_path / "dict.pt2"))
    loaded = load_model(tmp_path / "dict.pt2")
    assert loaded.io.input_names == ["user_id", "item_id", "cate_id", "dense"]
    feeds = {k: v.numpy() for k, v in x.items()}
    np.testing.assert_allclose(loaded.reference(feeds)["output"], model(x).detach().numpy(), atol=1e-6)


def test_dict_input_model_updates_prunes_and_distills(dict_model, tmp_path):
    from edgeopt.distill import distill
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    common = dict(arch=f"{ARCH}:dict_ranker", inputs=[parse_input(s) for s in ctr_models.DICT_INPUTS])
    r = update(model=dict_model / "dict.pt", data=dict_model / "new.npz", old_data=dict_model / "old.npz",
               task="binary", epochs=1, out=tmp_path / "up", progress=False, **common)
    assert (tmp_path / "up" / "model.pt2").is_file() and r.report.output_kind == "probs"
    # the CLI, its stderr a pipe as in a CI log: a line per stage with its time, not silence
    r = run_cli("prune", dict_model / "dict.pt", "--arch", common["arch"], *DICT_ARGS, "--ratio", "0.5", "--structured",
                "--data", dict_model / "old.npz", "--recover-epochs", "1", "--task", "binary", "--no-speed-check",
                "-o", tmp_path / "pr")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pr" / "model.pt2").is_file()
    assert re.search(r"^\s*\d+\.\d s  \S", r.stdout, re.M), r.stdout
    d = distill(teacher=dict_model / "dict.pt", student=dict_model / "dict.pt", teacher_arch=common["arch"],
                student_arch=common["arch"], inputs=common["inputs"], data=dict_model / "old.npz", task="binary",
                epochs=1, latency=False, out=tmp_path / "ds", progress=False)
    assert (tmp_path / "ds" / "model.pt2").is_file(), d
    r = run_cli("export", tmp_path / "up", "--to", "onnx", "-o", tmp_path / "upx")
    assert r.returncode == 0, r.stderr


# --- also found ----------------------------------------------------------------------------------------

def test_ctrl_c_before_the_first_epoch_says_start_again(tmp_path):
    from edgeopt.train.checkpoint import LAST, interrupted_message

    out = tmp_path / "student"
    assert "Start again" in interrupted_message(out) and "--resume" not in interrupted_message(out)
    (tmp_path / "student.checkpoint").mkdir()
    (tmp_path / "student.checkpoint" / LAST).write_bytes(b"x")
    assert "plus --resume" in interrupted_message(out)


def test_update_keeps_a_pt2s_batch_constraint(clicks, tmp_path):
    """A .pt2 saved with Dim("batch", max=1024) updates and saves (it used to exit 3 while saving,
    after training); a --batch-size past its maximum is refused before training."""
    import torch

    from edgeopt.update import update

    model = ctr_models.deepfm()
    model.load_state_dict(torch.load(clicks / "deepfm_logits.pt"))
    rows = ctr_models.click_rows(4, seed=0)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(model.eval(), (torch.from_numpy(rows["cats"]), torch.from_numpy(rows["dense"])),
                             dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(ep, str(tmp_path / "ranker.pt2"))
    common = dict(model=tmp_path / "ranker.pt2", data=clicks / "new.npz", task="binary", epochs=1, progress=False)
    with pytest.raises(UsageError, match="up to 1024"):
        update(out=tmp_path / "big", batch_size=2048, **common)
    r = update(out=tmp_path / "out", **common)
    assert (r.out / "model.pt2").is_file()
    saved = torch.export.load(str(r.out / "model.pt2"))
    assert 1024 in {int(v.upper) for v in saved.range_constraints.values()}


def test_openvino_ports_keep_the_names_users_know():
    """OpenVINO merges a folded Cast's output name into the input's; the user's name is kept."""
    from edgeopt.runtime.openvino import port_name

    class Port:
        def __init__(self, names, first):
            self.names, self.first = names, first

        def get_names(self):
            return self.names

        def get_any_name(self):
            return self.first

    assert port_name(Port({"C1", "/inner/embedding/Cast_output_0"}, "/inner/embedding/Cast_output_0"), "x") == "C1"
    assert port_name(Port({"logits"}, "logits"), "x") == "logits"
    assert port_name(Port(set(), ""), "output0") == "output0"


def test_bench_help_has_no_literal_percent_signs():
    r = run_cli("bench", "--help")
    assert r.returncode == 0 and "%%" not in r.stdout and "PCT percent" in " ".join(r.stdout.split())


def test_bench_skips_tensorrt_unless_asked():
    from edgeopt.bench.cases import _runtimes_for

    listed = ["onnxruntime", "openvino", "tensorrt"]
    assert _runtimes_for("onnx", listed, None) == ["onnxruntime", "openvino"]
    assert _runtimes_for("tensorrt", ["tensorrt"], None) == ["tensorrt"]  # an engine still runs on it


def test_a_missing_data_file_is_reported_before_the_teacher_loads(tmp_path):
    r = run_cli("distill", "--teacher", tmp_path / "no-teacher.pt", "--student-layers", "1",
                "--data", tmp_path / "missing.npz", "-o", tmp_path / "out")
    assert r.returncode == 2 and "no such data file or folder" in r.stderr and "missing.npz" in r.stderr
    r = run_cli("prune", tmp_path / "no-model.pt", "--ratio", "0.5", "--data", tmp_path / "missing.npz",
                "-o", tmp_path / "out")
    assert r.returncode == 2 and "missing.npz" in r.stderr


def test_openvino_int8_of_a_ranker_compresses_its_tables_and_keeps_the_smallest(clicks, tmp_path):
    """OpenVINO INT8 of a model with embedding tables tries weight compression (tables in 4 bits,
    the MLP in 8) beside the QDQ and NNCF routes, and keeps the smallest that passes the gate."""
    import openvino as ov

    out = tmp_path / "out"
    r = run_cli("export", clicks / "deepfm_logits.pt", *_arch_args(), "-o", out, "--int8", "--calib",
                clicks / "old.npz", "--calib-size", "256", "--eval-size", "256", "--no-speed-check",
                "--max-drop", "0.05")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    kept = next(c for c in m["int8"]["candidates"] if c["runtime"] == "openvino")
    assert kept["name"] == "openvino-weights" and kept["table_weights"] == "int4_asym", kept
    assert {v["name"] for v in kept["variants"]} >= {"openvino-qdq", "openvino-nncf", "openvino-weights"}
    xml = out / "openvino" / "model.int8.xml"
    consts = {(op.get_element_type().get_type_name(), tuple(op.get_output_shape(0)))
              for op in ov.Core().read_model(str(xml)).get_ordered_ops() if op.get_type_name() == "Constant"}
    assert ("u4", (100, 16)) in consts and ("u4", (100, 1)) in consts  # both tables, 4 bits
    assert ("u8", (128, 134)) in consts  # the MLP's first layer, 8 bits
    assert not any(t == "f32" and s in ((100, 16), (100, 1)) for t, s in consts)  # no FP32 copy of a table
    row = next(b for b in m["int8"]["bytes"] if b["int8"] == "openvino/model.int8.xml")
    assert row["ratio"] < 0.6  # the MLP dominates at 100 rows: tables at 4 bits, MLP at 8, the .xml as text


def test_lwf_on_one_binary_column_matches_logits_the_high_temperature_limit_of_kl():
    """LwF on a click model distils logits: its gradient is half the binary KL's at a high
    temperature (BINARY_LWF_SCALE = 1/16 against the limit's 1/8); probabilities distil as the
    logits they came from; a classifier keeps the temperature KL."""
    import torch

    from edgeopt.train import objectives
    from edgeopt.update.methods import BINARY_LWF_SCALE, lwf_loss

    teacher = torch.tensor([[3.0], [-2.0], [0.5], [6.0]])
    student = torch.tensor([[1.0], [1.0], [-0.5], [2.0]], requires_grad=True)
    loss = lwf_loss("binary", student, teacher)
    assert loss.item() == pytest.approx(BINARY_LWF_SCALE * float(((student.detach() - teacher) ** 2).mean()))
    (g,) = torch.autograd.grad(loss, student)
    s2 = student.detach().clone().requires_grad_(True)
    (g_kl,) = torch.autograd.grad(objectives.loss("binary", s2, teacher, temperature=200.0), s2)
    assert torch.allclose(2 * g, g_kl, rtol=1e-3)
    at_t2 = torch.autograd.grad(objectives.loss("binary", s2, teacher, temperature=2.0), s2)[0]
    assert not torch.allclose(2 * g, at_t2, rtol=0.05)  # a confident teacher pulls harder than at T = 2
    probs = lwf_loss("binary", torch.sigmoid(student), torch.sigmoid(teacher), output_kind="probs")
    assert probs.item() == pytest.approx(loss.item(), rel=1e-4)
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    assert float(lwf_loss("classify", logits, logits.flip(-1), temperature=2.0)) == pytest.approx(
        float(objectives.loss("classify", logits, logits.flip(-1), None, temperature=2.0)))

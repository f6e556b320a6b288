"""`edgeopt distill`: tiny real models end to end through the CLI, the output read back in its own
family and exported, resume, seeds, torchrun and bad input."""

import json
import warnings

import numpy as np
import pytest

from tests.conftest import ROOT, hf_folder, run_cli

TINY = f"{ROOT / 'tests' / 'tiny_models.py'}:resnet_tiny"


@pytest.fixture(scope="module")
def tiny_st(minilm_path, tmp_path_factory):
    """A 4-layer BERT saved as a sentence-transformers folder (mean pooling + normalization), as a
    user would build one: sentence-transformers modules around a Hugging Face folder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    root = tmp_path_factory.mktemp("st")
    bert = hf_folder(minilm_path, root / "bert", "BertModel", num_hidden_layers=4)
    tf = Transformer(str(bert), max_seq_length=48)
    st = SentenceTransformer(modules=[tf, Pooling(32, pooling_mode="mean"), Normalize()], device="cpu")
    st.save(str(root / "tiny-st"))
    return root / "tiny-st"


@pytest.fixture(scope="module")
def titles_file(product_titles, tmp_path_factory):
    path = tmp_path_factory.mktemp("titles") / "titles.txt"
    path.write_text("\n".join(product_titles[::150][:240]) + "\n")
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Labelled 3x32x32 images (10 classes) and a random-weight tiny CNN teacher (state dict)."""
    import torch

    sys_path = str(ROOT / "tests")
    import sys

    sys.path.insert(0, sys_path)
    from tiny_models import resnet_tiny

    root = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 160)
    x = rng.standard_normal((160, 3, 32, 32)).astype(np.float32) + labels[:, None, None, None] * 0.1
    np.savez(root / "train.npz", image=x[:128], labels=labels[:128])
    np.savez(root / "eval.npz", image=x[128:], labels=labels[128:])
    np.savez(root / "unlabeled.npz", image=x[:128])
    torch.manual_seed(0)
    torch.save(resnet_tiny(num_classes=10, width=16).state_dict(), root / "teacher.pt")
    torch.save(resnet_tiny(num_classes=10, width=8).state_dict(), root / "student.pt")
    torch.save(resnet_tiny(num_classes=5, width=8).state_dict(), root / "student5.pt")
    return root


def cnn_args(images, out, *extra):
    return ["distill", "--teacher", images / "teacher.pt", "--teacher-arch", TINY,
            "--teacher-arch-kwargs", '{"num_classes": 10, "width": 16}', "--student", images / "student.pt",
            "--student-arch", TINY, "--student-arch-kwargs", '{"num_classes": 10, "width": 8}',
            "--input", "image:1x3x32x32:float32", "--data", images / "train.npz", "--eval", images / "eval.npz",
            "--no-latency", "--json", "-o", out, *extra]


def test_embedder_distils_into_a_sentence_transformers_folder_that_exports_like_the_original(
        tiny_st, titles_file, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import SentenceTransformer
    out = tmp_path / "student"
    # a store search: a title's first words find it (relevance 3) among the others; relevance 1 is not relevant
    titles = titles_file.read_text().splitlines()
    judgments = tmp_path / "judgments.csv"
    lines = ["query,document,relevance"] + [f'"{" ".join(t.split()[:3])}","{t}",3' for t in titles[:40:2]]
    lines += [f'"{" ".join(titles[0].split()[:3])}","{titles[1]}",1']
    judgments.write_text("\n".join(lines) + "\n")
    r = run_cli("distill", "--teacher", tiny_st, "--student-layers", "2", "--data", titles_file, "--epochs", "2",
                "--judgments", judgments, "--min-relevance", "2", "--no-latency", "--json", "-o", out)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    search = report["quality"]["search"]
    assert search["queries"] == len({" ".join(t.split()[:3]) for t in titles[:40:2]})
    assert search["pool"] >= 20 and 0 < search["teacher"]["recall@10"] <= 1
    assert set(search["student"]) == {"recall@10", "ndcg@10"}
    assert report == json.loads((out / "report.json").read_text())
    assert report["task"] == "embed" and report["student"]["kept_layers"] == [0, 3]
    q = report["quality"]
    # distillation moved the student towards the teacher, on titles it never trained on
    assert q["student"]["cosine_mean"] > q["untrained_student"]["cosine_mean"]
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    assert not (tmp_path / "student.checkpoint").exists()
    # the folder is a sentence-transformers model in its own right
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 48 and st[0].auto_model.config.num_hidden_layers == 2
    emb = st.encode(["red running shoes", "kids winter boots"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # normalization kept
    # and export --int8 treats it as it treats the teacher: tokenizer, max length, pooled output
    from edgeopt.models import load_model

    teacher = load_model(tiny_st)
    r = run_cli("export", out, "--int8", "--to", "onnx", "--no-speed-check", "--calib", titles_file,
                "--max-drop", "0.05", "--min-cosine", "0.5", "-o", tmp_path / "export", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert teacher.max_length == 48
    assert s["preprocessing"] == {"tokenizer": "tokenizer/", "max_length": teacher.max_length}
    assert s["outputs"] == [{"name": "sentence_embedding", "dtype": "float32", "shape": ["batch", 32]}]
    assert [i["name"] for i in s["inputs"]] == teacher.io.input_names
    assert any(a["precision"] == "int8" for a in s["artifacts"])
    # gated against the teacher instead of the student's own FP32 export: the drop is what INT8 loses on top
    r = run_cli("export", out, "--int8", "--to", "onnx", "--no-speed-check", "--calib", titles_file,
                "--reference", tiny_st, "--max-drop", "0.05", "--min-cosine", "0.5", "-o", tmp_path / "vs-teacher",
                "--json")
    assert r.returncode == 0, r.stderr
    q = next(a for a in json.loads(r.stdout)["artifacts"] if a["precision"] == "int8")["quality"]
    assert q["vs"] == str(tiny_st) and q["metric"] == "cosine"
    assert q["reference"] < 1 - 1e-5  # the FP32 student against the teacher: a student, not a copy
    assert q["drop"] == pytest.approx(q["reference"] - q["value"]) and q["drop"] < 0.05
    r = run_cli("export", out, "--int8", "--to", "onnx", "--reference", tmp_path / "nope",
                "-o", tmp_path / "never")
    assert r.returncode == 2 and "nope" in r.stderr and not (tmp_path / "never").exists()


def test_classifier_writes_a_pt2_folder_that_export_reads(images, tmp_path):
    from edgeopt.models import load_model

    out = tmp_path / "student"
    r = run_cli(*cnn_args(images, out, "--epochs", "1"))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["task"] == "classify" and report["data"]["labels"]
    assert {"top1", "agreement"} <= set(report["quality"]["student"]) and "top1" in report["quality"]["teacher"]
    # model.state.pt: the weights alone too, as --student-arch built the student (prune can take it)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt2", "model.state.pt", "report.json"]
    model = load_model(out)  # no --input needed: model.json keeps the input spec and task
    assert model.family == "pt2" and model.metadata["task"] == "classify" and model.name == "student"
    assert model.io.inputs[0].name == "image" and model.io.outputs[0].shape == ("batch", 10)
    r = run_cli("export", out, "--to", "onnx", "-o", tmp_path / "export", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["task"] == "classify"


def test_unlabeled_images_are_labelled_by_the_teacher(images, tmp_path):
    r = run_cli(*cnn_args(images, tmp_path / "s", "--epochs", "1")[:-4], "--data", images / "unlabeled.npz",
                "--task", "classify", "--no-latency", "--json", "-o", tmp_path / "s")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["data"]["labels"] is False and report["training"]["history"][0]["agreement"] >= 0


def _student_weights(out):
    import torch

    ep = torch.export.load(str(out / "model.pt2"))
    return {k: v.detach().clone() for k, v in ep.state_dict.items()}


def _run(images, out, **kw):
    from edgeopt.distill import distill

    kw = {"data": images / "train.npz", "eval_data": images / "eval.npz", **kw}
    return distill(teacher=images / "teacher.pt", teacher_arch=TINY,
                   teacher_arch_kwargs={"num_classes": 10, "width": 16}, student=images / "student.pt",
                   student_arch=TINY, student_arch_kwargs={"num_classes": 10, "width": 8}, inputs=_specs(),
                   latency=False, progress=False, out=out, **kw)


def _specs():
    from edgeopt.spec import parse_input

    return [parse_input("image:1x3x32x32:float32")]


def test_same_seed_same_student_other_seed_another(images, tmp_path):
    import torch

    a, b, c = (_student_weights(_run(images, tmp_path / n, epochs=1, seed=s).out) for n, s in
               (("a", 1), ("b", 1), ("c", 2)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_interrupted_run_resumes_to_the_same_student(images, tmp_path, first_epoch_interrupt):
    import torch

    whole = _student_weights(_run(images, tmp_path / "whole", epochs=3, patience=3).out)
    first_epoch_interrupt.arm()
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _run(images, out, epochs=3, patience=3)
    assert not out.exists() and (tmp_path / "resumed.checkpoint" / "last.pt").is_file()
    first_epoch_interrupt.disarm()
    result = _run(images, out, epochs=3, patience=3, resume=True)
    assert result.report.training.resumed_at_epoch == 1
    assert [h["epoch"] for h in result.report.training.history] == [1, 2, 3]
    resumed = _student_weights(out)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    # a different command refuses the checkpoint of another run
    from edgeopt.errors import UsageError

    first_epoch_interrupt.arm()
    with pytest.raises(KeyboardInterrupt):
        _run(images, tmp_path / "other", epochs=3, patience=3)
    first_epoch_interrupt.disarm()
    with pytest.raises(UsageError, match="different run"):
        _run(images, tmp_path / "other", epochs=3, patience=3, resume=True, seed=5)


def test_torchrun_two_processes(tiny_st, titles_file, tmp_path):
    """Data-parallel through torchrun (gloo on CPU), launched by --nproc-per-node, on the main use
    case: a layer-dropped sentence-transformers student (rank 0 writes it, both ranks train)."""
    out = tmp_path / "ddp"
    r = run_cli("distill", "--teacher", tiny_st, "--student-layers", "2", "--data", titles_file, "--epochs", "1",
                "--no-latency", "--nproc-per-node", "2", "--json", "-o", out)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # rank 0 alone prints
    assert report["training"]["processes"] == 2 and "Traceback" not in r.stderr
    assert (out / "modules.json").is_file()


def test_torchrun_bad_input_is_one_line_exit_2(images, tmp_path):
    r = run_cli(*cnn_args(images, tmp_path / "out", "--epochs", "0", "--nproc-per-node", "2"))
    assert r.returncode == 2 and r.stderr.strip() == "edgeopt: error: --epochs must be >= 1, got 0"


@pytest.mark.parametrize("extra, message", [
    (["--student-layers", "1"], "--student-layers needs a transformer teacher"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["--student-arch-kwargs", '{"num_classes": 5, "width": 8}'], "outputs differ"),
])
def test_bad_input_on_a_cnn(images, tmp_path, extra, message):
    out = tmp_path / "out"
    args = cnn_args(images, out, *extra)
    if extra[0] == "--student-layers":  # instead of --student
        i = args.index("--student")
        del args[i:i + 2]
    if "--student-arch-kwargs" in extra:
        args[args.index("--student-arch-kwargs") + 1] = extra[1]
        args[args.index("--student") + 1] = images / "student5.pt"
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert not out.exists() and not (tmp_path / "out.checkpoint").exists()


@pytest.mark.parametrize("kw, message", [
    ({"student_layers": 4}, "out of range: tiny-st has 4 layers; choose 1 to 3"),
    ({"student_layers": 0}, "out of range"),
    ({"student_layers": 2, "data": "missing.txt"}, "no such data file"),
    ({"student_layers": 2, "data": None}, "--data is required"),
    ({"student_layers": 2, "student": "x"}, "exactly one of"),
    ({"student_layers": 2, "latency_budget": 1.5}, "exactly one of"),
    ({"latency_budget": 1.5}, "--latency-budget must be between 0 and 1"),
    ({"student_layers": 2, "task": "classify"}, "contradicts"),
    ({"student_layers": 2, "judgments": "missing.csv"}, "--judgments missing.csv: no such file"),
    ({"student_layers": 2, "judgments": "J:query,title\nshoes,red shoes\n"}, "'query' and 'document' columns"),
    ({"student_layers": 2, "judgments": "J:query,document,relevance\nshoes,red shoes,high\n"}, "line 2: relevance"),
    ({"student_layers": 2, "judgments": "J:query,document,relevance\nshoes,red shoes,1\n", "min_relevance": 2},
     "no query has a relevant document"),
])
def test_bad_input_on_an_embedder(tiny_st, titles_file, tmp_path, kw, message):
    from edgeopt.distill import distill
    from edgeopt.errors import UsageError

    out = tmp_path / "out"
    kw = {"data": titles_file, **kw}
    if str(kw.get("judgments", "")).startswith("J:"):  # a judgments file with this text
        (tmp_path / "j.csv").write_text(kw["judgments"][2:])
        kw["judgments"] = tmp_path / "j.csv"
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        distill(teacher=tiny_st, out=out, progress=False, latency=False, **kw)
    assert not out.exists() and not (tmp_path / "out.checkpoint").exists()


def test_refuses_to_overwrite_a_folder_it_did_not_write(tiny_st, titles_file, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = run_cli("distill", "--teacher", tiny_st, "--student-layers", "2", "--data", titles_file, "-o", out)
    assert r.returncode == 2 and "not an earlier distill output" in r.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_pick_layers_spreads_evenly():
    from edgeopt.distill.students import pick_layers

    assert pick_layers(6, 3) == [0, 2, 5] and pick_layers(12, 3) == [0, 6, 11] and pick_layers(6, 1) == [5]
    assert pick_layers(6, 5) == [0, 1, 2, 4, 5]


@pytest.mark.slow
def test_latency_budget_picks_the_deepest_student_within_budget(tiny_st, titles_file, tmp_path):
    """Every candidate is exported and timed in fresh processes; the chosen one is the deepest whose
    ratio is within the budget (timings on a shared machine are noisy: only the rule is checked)."""
    out = tmp_path / "student"
    r = run_cli("distill", "--teacher", tiny_st, "--latency-budget", "0.95", "--data", titles_file, "--epochs", "1",
                "--json", "-o", out)
    if r.returncode == 1:  # no candidate was fast enough on this (loaded) machine: a gate failure, nothing written
        assert "no layer-dropped student meets --latency-budget" in r.stderr and not out.exists()
        return
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    budget = report["latency_budget"]
    chosen = budget["chosen_layers"]
    assert report["student"]["layers"] == chosen
    measured = {c["layers"]: c for c in budget["candidates"]}
    assert measured[chosen]["ratio"] <= 0.95
    assert all(measured[n]["ratio"] > 0.95 for n in measured if n > chosen)
    assert report["teacher"]["latency"]["p50_ms"] > 0 and report["student"]["latency"]["p50_ms"] > 0


def test_hf_text_classifier_keeps_its_family(tiny_bert, product_titles, tmp_path):
    """A Hugging Face classifier folder -> a 1-layer Hugging Face folder (soft targets + labels,
    token masking), which transformers and load_model read as a classifier."""
    import transformers

    from edgeopt.distill import distill
    from edgeopt.models import load_model

    data = tmp_path / "titles.jsonl"
    titles = product_titles[::300][:120]
    data.write_text("".join(json.dumps({"text": t, "label": ["men", "women", "other"][
        0 if "Men" in t else 1 if "Women" in t else 2]}) + "\n" for t in titles))
    result = distill(teacher=tiny_bert, student_layers=1, data=data, out=tmp_path / "out", epochs=1, latency=False,
                     progress=False)
    assert result.task == "classify" and result.report.settings.augment
    assert "top1" in result.report.quality.student
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out"))
    assert model.config.num_hidden_layers == 1 and model.config.num_labels == 3
    loaded = load_model(tmp_path / "out")
    assert loaded.family == "hf" and loaded.metadata["task"] == "classify"


@pytest.mark.parametrize("task", ["binary", "regress"])
def test_tabular_ranker_and_regressor(task, tmp_path):
    """--task binary|regress: soft targets on logits (+ labels), feature noise; model.pt2 out."""
    import torch

    from edgeopt.distill import distill
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    arch = f"{ROOT / 'tests' / 'tiny_models.py'}:mlp"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32) if task == "binary" else (x[:, 0] * 2 + x[:, 1]).astype(np.float32)
    np.savez(tmp_path / "rows.npz", features=x, labels=y)
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Linear(12, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).state_dict(),
               tmp_path / "teacher.pt")
    torch.save(torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).state_dict(),
               tmp_path / "student.pt")
    result = distill(teacher=tmp_path / "teacher.pt", teacher_arch=arch, teacher_arch_kwargs={"hidden": 64},
                     student=tmp_path / "student.pt", student_arch=arch, student_arch_kwargs={"hidden": 8},
                     inputs=[parse_input("features:1x12:float32")], data=tmp_path / "rows.npz", task=task,
                     out=tmp_path / "out", epochs=3, latency=False, progress=False)
    history = result.report.training.history
    assert history[-1]["loss"] < history[0]["loss"]
    key = "accuracy" if task == "binary" else "mse"
    assert key in result.report.quality.student and key in result.report.quality.teacher
    assert load_model(tmp_path / "out").metadata["task"] == task


def test_importing_distill_loads_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, edgeopt.cli.distill, edgeopt.distill, edgeopt.train; heavy = [m for m in ('torch', "
            "'transformers', 'sentence_transformers', 'onnxruntime') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_image_folder_with_augmentation_keeps_class_names(images, tmp_path):
    """An ImageFolder tree (decoded lazily, flip / crop / jitter applied): the class names reach
    model.json, and the held-out split stays lazy."""
    from PIL import Image

    from edgeopt.distill import distill
    from edgeopt.models import load_model

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(10)]
    for k, c in enumerate(classes):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for j in range(4):
            arr = np.clip(rng.normal(25 * k, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / c / f"{j}.png")
    result = _run(images, tmp_path / "out", epochs=1, seed=0, **{"data": tmp_path / "imgs", "eval_data": None})
    assert result.report.settings.augment and result.report.data.labels
    assert result.report.data.eval_samples == 4
    assert load_model(tmp_path / "out").metadata["class_names"] == classes


def test_a_student_built_by_its_arch_can_be_pruned_next(images, tmp_path):
    """distill keeps an arch-built student's weights beside its program (model.state.pt): with --arch
    the folder loads as that module again (what prune needs: its code); without, as the program."""
    import torch

    from edgeopt.models import load_model
    from edgeopt.prune import prune

    out = _run(images, tmp_path / "student", epochs=1).out
    assert (out / "model.state.pt").is_file()
    program = load_model(out)
    module = load_model(out, arch=TINY, arch_kwargs={"num_classes": 10, "width": 8})
    assert program.family == "pt2" and module.family == "state_dict"
    feeds = module.sample_feeds()[0]
    for a, b in zip(program.reference(feeds).values(), module.reference(feeds).values()):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1e-5)
    r = prune(model=out, arch=TINY, arch_kwargs={"num_classes": 10, "width": 8}, out=tmp_path / "pruned",
              structured=True, ratio=0.5, round_to=2, speed_check=False, progress=False)
    assert r.report.parameters.pruned < r.report.parameters.unpruned

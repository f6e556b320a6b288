"""The recipes shipped in examples/, each run as written on tiny real models and data laid out as
README's "Files the examples use" names them (examples/search.yaml runs on Home Depot under slow)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_DATA, run_cli

EXAMPLES = ROOT / "examples"


def _train_photo_teacher(ws: Path) -> None:
    """photo_cnn.pth: tests/tiny_models.py's resnet_tiny trained a few steps on photos/."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import resnet_tiny

    from edgeopt.data import load_data
    from edgeopt.models import load_model
    from edgeopt.spec import parse_input

    torch.manual_seed(0)
    net = resnet_tiny(num_classes=10)
    torch.save(net.state_dict(), ws / "photo_cnn.pth")
    io = load_model(ws / "photo_cnn.pth", arch=f"{ws / 'photo_net.py'}:resnet_tiny", arch_kwargs={"num_classes": 10},
                    inputs=[parse_input("x:batchx3x32x32:float32")]).io
    ds = load_data(ws / "photos", io=io)
    x = torch.from_numpy(np.concatenate([np.asarray(ds.samples[i]["x"]).reshape(1, 3, 32, 32) for i in range(len(ds))]))
    y = torch.from_numpy(np.asarray(ds.labels)).long()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    torch.save(net.state_dict(), ws / "photo_cnn.pth")
    torch.save(resnet_tiny(num_classes=10, width=8).state_dict(), ws / "photo_student.pth")


def test_photo_recipe(tmp_path):
    from tests.hf_families import image_folder

    ws = tmp_path
    shutil.copy(ROOT / "tests" / "tiny_models.py", ws / "photo_net.py")
    image_folder(ws / "photos", per_class=24)
    shutil.copytree(ws / "photos", ws / "photos-eval")
    _train_photo_teacher(ws)
    shutil.copy(EXAMPLES / "photo.yaml", ws / "photo.yaml")
    r = run_cli("run", ws / "photo.yaml", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["steps"]] == ["distill", "prune", "export", "bench"]
    # the student's own channels were pruned: prune read the distilled student, rebuilt by its arch
    prune = doc["steps"][1]
    assert prune["parameters"] < doc["steps"][0]["parameters"], (prune, doc["steps"][0])
    assert doc["measurements"]["metric"] == "top1"
    teacher = doc["measurements"]["variants"][0]
    assert teacher["name"] == "teacher FP32" and teacher["quality"] > 0.6  # it learned the three colours
    int8 = [v for v in doc["measurements"]["variants"] if v["precision"] == "int8" and v["step"] != "teacher"]
    assert int8 and doc["gates"][0]["passed"]
    assert (ws / "photo-out" / "report.html").is_file()


def test_recsys_recipe_writes_a_delta_bundle(tmp_path):
    from tests.test_readme import _sessions

    ws = tmp_path
    _sessions(ws)
    assert run_cli("keygen", "-o", ws / "release").returncode == 0
    arch = ["--arch", "recsys.py:session_gru", "--arch-kwargs", '{"n_items": 50, "dim": 16}',
            "--input", "item_ids:batchx5:int64"]
    assert run_cli("export", "recsys.pt", *arch, "--to", "onnx", "-o", "v1", cwd=ws).returncode == 0
    r = run_cli("package", "v1", "-o", "recsys-1.0.edgepkg", "--sign-key", "release.key", "--version", "1.0", cwd=ws)
    assert r.returncode == 0, r.stderr
    shutil.copy(EXAMPLES / "recsys.yaml", ws / "recsys.yaml")
    r = run_cli("run", ws / "recsys.yaml", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    package = doc["steps"][-1]
    assert package["delta"] is True and package["version"] == "1.1"
    update = doc["steps"][0]
    assert update["quality"] is not None
    assert doc["measurements"]["metric"] == "recall@20"  # the update step's metric, in the side-by-side table too
    # the delta installs over the full bundle the stores run
    dest = ws / "store"
    assert run_cli("install", ws / "recsys-1.0.edgepkg", "--dest", dest, "--public-key", ws / "release.pub").returncode == 0
    bundle = next((ws / "recsys-out" / "03-package").glob("*.edgepkg"))
    r = run_cli("install", bundle, "--dest", dest, "--public-key", ws / "release.pub")
    assert r.returncode == 0, r.stderr
    assert (dest / "recsys" / "current").resolve().name == "1.1"


@pytest.mark.slow
def test_search_recipe_on_home_depot(tmp_path):
    """examples/search.yaml as shipped, on the real catalogue and judgments (about 30 min on 2 cores)."""
    if not (SHARED_DATA / "homedepot" / "train.csv.zip").is_file():
        pytest.skip(f"shared data missing: {SHARED_DATA / 'homedepot'} (see ../shared/data/SOURCES.md)")
    ws = tmp_path / "examples"
    shutil.copytree(EXAMPLES, ws, ignore=shutil.ignore_patterns("homedepot", "*-out"))
    import subprocess

    subprocess.run([sys.executable, str(ws / "homedepot_data.py"), "--data", str(SHARED_DATA)], check=True)
    r = run_cli("run", ws / "search.yaml", "--json", timeout=3600)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    doc = json.loads(r.stdout)
    gates = {g["name"]: g for g in doc["gates"]}
    # the recipe gates on the targets (>= 0.97, <= 0.40x), met with 1.4 points / 4 % to spare on
    # the CPU docs/PERFORMANCE.md names; the latency bound here leaves room for other CPUs' INT8 kernels
    assert gates["quality"]["value"] >= 0.97, gates
    assert gates["latency"]["value"] <= 0.45, gates
    stock = next(v for v in doc["measurements"]["variants"] if v["name"] == "teacher stock INT8")
    final = next(v for v in doc["measurements"]["variants"] if v["name"] == "export INT8 (model.int8.onnx)")
    assert final["quality"] > stock["quality"], (final, stock)


@pytest.mark.slow
def test_recsys_recipe_on_yoochoose(tmp_path):
    """examples/recsys.yaml on YOOCHOOSE clicks: the stores' GRU (trained on the earlier period) updated
    on the later one with replay, exported, and shipped as a delta that installs over version 1.0."""
    if not (SHARED_DATA / "yoochoose" / "yoochoose-clicks-100k_test.txt").is_file():
        pytest.skip(f"shared data missing: {SHARED_DATA / 'yoochoose'} (see ../shared/data/SOURCES.md)")
    import subprocess

    ws = tmp_path / "examples"
    shutil.copytree(EXAMPLES, ws, ignore=shutil.ignore_patterns("homedepot", "yoochoose", "*-out"))
    subprocess.run([sys.executable, str(ws / "yoochoose_data.py"), "--data", str(SHARED_DATA), "--epochs", "2"],
                   check=True)
    data = ws / "yoochoose"
    r = run_cli("run", data / "recsys.yaml", "--json", timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    update = doc["steps"][0]
    q = update["quality"]
    assert q["metric"] == "recall@20"
    # the later period's clicks were learned (more than chance over ~2,900 items by far) and the earlier
    # period's kept: the update's own forgetting gate (max_forgetting 0.3) passed, and it is far tighter
    assert q["after"]["new"]["recall@20"] > q["before"]["new"]["recall@20"] + 0.01, q
    assert q["forgetting"] <= 0.02, q
    package = doc["steps"][-1]
    assert package["delta"] is True and package["version"] == "1.1"
    dest = tmp_path / "store"
    pub = data / "release.pub"
    assert run_cli("install", data / "recsys-1.0.edgepkg", "--dest", dest, "--public-key", pub).returncode == 0
    bundle = next((data / "recsys-out" / "03-package").glob("*.edgepkg"))
    assert bundle.stat().st_size < (data / "recsys-1.0.edgepkg").stat().st_size
    r = run_cli("install", bundle, "--dest", dest, "--public-key", pub)
    assert r.returncode == 0, r.stderr
    assert (dest / "recsys" / "current").resolve().name == "1.1"

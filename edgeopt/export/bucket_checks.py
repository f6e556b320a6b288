"""Sequence-length buckets for the OpenVINO IRs of text models (backends/buckets.py says why).

Each bucket is checked before it is written into the IR: the padded static-shape variant runs on
real inputs of that length and must match the source (FP32 / FP16: the artifact's verification
tolerance) or, for INT8, agree with the dynamic IR that passed the gate and pass the gate again
(its metric on its held-out data, one sample at a time as a store serves them). A bucket that fails
is dropped alone, and only buckets that some checked input reached are kept, so every static shape
an edgeopt runtime may run was measured. The buckets go into the IR's rt_info by
a text edit of the .xml, so the weights file is never rewritten.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.models.base import LoadedModel
from edgeopt.optimize.metrics import cosines
from edgeopt.backends.buckets import (
    MASK_INPUT,
    RT_INFO_PATH,
    ShapeBuckets,
    default_lengths,
    model_rt_info_start,
    parse_lengths,
)

CONSISTENCY = 0.995  # min cosine of a static INT8 variant to the dynamic IR (normal: >= 0.999; broken: <= 0.98)


def plan(model: LoadedModel, spec: str) -> ShapeBuckets | None:
    """The buckets to check for ``--shape-buckets`` SPEC (auto, off, 8,16,32); None when off or
    when the model does not take token sequences with an attention mask."""
    spec = (spec or "auto").strip().lower()
    if spec == "off":
        return None
    if spec == "auto":
        lengths = None
    else:
        try:
            lengths = parse_lengths(spec)
        except ValueError as e:
            raise UsageError(f"--shape-buckets: {e}; e.g. --shape-buckets 8,16,32, or auto / off") from None
    names = [s.name for s in model.io.inputs]
    if not model.is_text or MASK_INPUT not in names or any(len(s.shape) != 2 or s.dtype not in ("int64", "int32")
                                                           for s in model.io.inputs):
        return None
    if lengths and model.max_length and lengths[-1] > model.max_length:
        raise UsageError(f"--shape-buckets {lengths[-1]} is longer than the model's maximum length "
                         f"{model.max_length}; use lengths up to {model.max_length}")
    pad = {"input_ids": int(getattr(model.tokenizer, "pad_token_id", None) or 0)} if "input_ids" in names else {}
    return ShapeBuckets(lengths or default_lengths(model.max_length), pad)


def probe_feeds(model: LoadedModel, buckets: ShapeBuckets) -> list[dict[str, np.ndarray]]:
    """Two tokenized texts per bucket: one just longer than the bucket below (the most padding)
    and one that fills it. Built-in product titles, joined and cut to length by the tokenizer."""
    from edgeopt.data.text import read_texts
    from edgeopt.assets import CALIBRATION_TITLES

    titles, _ = read_texts(CALIBRATION_TITLES)
    names = [s.name for s in model.io.inputs]
    feeds = []
    for lower, length in zip(buckets.lower, buckets.lengths):
        for n in sorted({max(3, lower + 1), length}):
            start = (7 * len(feeds)) % len(titles)  # a different text each time
            text = " ".join(titles[start:] + titles[:start])
            enc = model.tokenizer([text], truncation=True, max_length=n, return_tensors="np")
            feeds.append({k: enc[k].astype("int64") for k in names})
    return feeds


def _session(xml: Path, precision: str, buckets: ShapeBuckets, threads):
    """The device runtime's OpenVINO engine with ``buckets``, each of them allowed a variant: the
    static shapes checked here are those the device will run."""
    from edgeopt.runtime.openvino import OvEngine

    return OvEngine(xml, threads=threads, precision=precision, buckets=buckets, max_variants=len(buckets.lengths))


def _dynamic_and_static(session, feeds: dict) -> tuple[dict, dict | None, int | None]:
    """(dynamic outputs, static-variant outputs or None, bucket) for ``feeds``."""
    dynamic = session.run_dynamic(feeds)
    if not session.prepare(feeds):
        return dynamic, None, None
    return dynamic, session.run(feeds), session.buckets.bucket(next(iter(feeds.values())).shape[1])


def check_against_source(xml: Path, precision: str, buckets: ShapeBuckets, model: LoadedModel, threads=None) -> dict:
    """FP32 / FP16 IR: each bucket's variant on probe texts vs the source, at the IR's tolerance."""
    from edgeopt.export.verify import Tolerance, compare

    tol = Tolerance.for_artifact("openvino", precision)
    session = _session(xml, precision, buckets, threads)
    per_bucket: dict[int, dict] = {}
    probes = probe_feeds(model, buckets)
    session.prepare_all(probes)
    for feeds in probes:
        if session.prepare(feeds):
            static, size = session.run(feeds), session.buckets.bucket(next(iter(feeds.values())).shape[1])
            result = compare([model.reference(feeds)], [static], tol)
            seen = per_bucket.setdefault(size, {"passed": True, "max_abs_diff": 0.0, "cosine_min": 1.0})
            seen["passed"] &= bool(result.get("passed"))
            seen["max_abs_diff"] = max(seen["max_abs_diff"], result.get("max_abs_diff", float("inf")))
            seen["cosine_min"] = min(seen["cosine_min"], result.get("cosine_min", 0.0))
    kept = [n for n, r in sorted(per_bucket.items()) if r["passed"]]
    return _verdict(buckets, kept, per_bucket, {"vs": "source", "atol": tol.atol, "rtol": tol.rtol,
                                                "min_cosine": tol.min_cosine})


def check_with_gate(xml: Path, buckets: ShapeBuckets, scorer, threads=None, probes=()) -> dict:
    """INT8 IR, each held-out sample alone: a bucket is kept when its variant gives the same model
    as the dynamic IR that passed the gate (cosine >= CONSISTENCY on each of its samples: a static
    INT8 kernel can be wrong at one length; MiniLM at 32 tokens read 0.874 under OpenVINO
    2026.4), and the outputs with the kept buckets must still pass the gate. Buckets longer than
    every held-out sample are checked for that agreement on ``probes`` (probe_feeds) instead."""
    session = _session(xml, "int8", buckets, threads)
    rows = []
    for sample in scorer.data.samples:
        dynamic, static, size = _dynamic_and_static(session, sample)
        rows.append((dynamic[scorer.output], None if static is None else static[scorer.output], size))
    per_bucket: dict[int, dict] = {}

    def agree(dynamic, static, size, on):
        seen = per_bucket.setdefault(size, {"samples": 0, "on": on, "cosine_min_vs_dynamic": 1.0})
        seen["samples"] += 1
        seen["cosine_min_vs_dynamic"] = min(seen["cosine_min_vs_dynamic"], float(cosines(dynamic, static).min()))

    for dynamic, static, size in rows:
        if static is not None:
            agree(dynamic, static, size, "held-out data")
    reached = set(per_bucket)
    for feeds in probes:
        if buckets.bucket(next(iter(feeds.values())).shape[1]) not in reached:
            dynamic, static, size = _dynamic_and_static(session, feeds)
            if static is not None:
                agree(dynamic[scorer.output], static[scorer.output], size, "probe texts")
    kept = [n for n, r in sorted(per_bucket.items()) if r["cosine_min_vs_dynamic"] >= CONSISTENCY]
    for n, r in per_bucket.items():
        r["passed"] = n in kept
    q = scorer.evaluate(np.concatenate([scorer.rows(s if s is not None and z in kept else d, sample)
                                        for (d, s, z), sample in zip(rows, scorer.data.samples)]))
    if not scorer.passes(q):
        kept = []
    return _verdict(buckets, kept, per_bucket, {"quality": q.to_json(), "consistency_min_cosine": CONSISTENCY})


def _verdict(buckets: ShapeBuckets, kept: list[int], per_bucket: dict, details: dict) -> dict:
    return {"passed": bool(kept), "buckets": buckets.keep(kept),
            "checked": {str(n): r for n, r in sorted(per_bucket.items())}, **details}


def annotate(xml: Path, buckets: ShapeBuckets | None) -> None:
    """Write ``buckets`` into the IR's model-level rt_info (the last <rt_info> block of the .xml),
    replacing any there; None removes them (an IR made from another keeps that one's rt_info)."""
    text = xml.read_text(encoding="utf-8")
    head_end = model_rt_info_start(text)
    head, tail = text[:head_end], text[head_end:]
    tail = re.sub(rf"[ \t]*<{RT_INFO_PATH[0]}>.*?</{RT_INFO_PATH[0]}>\n?", "", tail, flags=re.S)
    if buckets is not None:
        value = html.escape(json.dumps(buckets.to_json()), quote=True)
        block = f"\t\t<{RT_INFO_PATH[0]}>\n\t\t\t<{RT_INFO_PATH[1]} value=\"{value}\" />\n\t\t</{RT_INFO_PATH[0]}>\n"
        end = tail.rfind("</rt_info>")
        if end >= 0:
            tail = tail[:end] + block + "\t" + tail[end:]
        else:
            close = tail.rfind("</net>")
            tail = tail[:close] + "\t<rt_info>\n" + block + "\t</rt_info>\n" + tail[close:]
    tmp = xml.with_name(xml.name + ".tmp-buckets")
    tmp.write_text(head + tail, encoding="utf-8")
    tmp.replace(xml)


def apply(stage: Path, record, check: dict, log) -> None:
    """Annotate the artifact's IR when the check passed; record the outcome in the manifest."""
    buckets = check.pop("buckets")
    annotate(stage / record.path, buckets)
    if buckets is None:
        log(f"{record.path}: no shape buckets kept (no padded static shape passed the check)")
        record.extra["shape_buckets"] = {"enabled": False, **check}
        return
    log(f"{record.path}: static shapes for sequence lengths {', '.join(map(str, buckets.lengths))}")
    record.extra["shape_buckets"] = {"enabled": True, **buckets.to_json(), **check}

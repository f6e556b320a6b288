"""Text data (.txt one text per line, .jsonl with ``text`` and optional ``label``), tokenized with
the model's own tokenizer, one unpadded sample per text (padding never enters calibration)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.spec import IOSpec


def read_texts(path: Path) -> tuple[list[str], list | None]:
    raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if path.suffix == ".txt":
        return [t.strip() for t in raw if t.strip()], None
    texts, labels = [], []
    for n, line in enumerate(raw, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UsageError(f"{path.name} line {n} is not JSON; each line needs {{\"text\": ...}}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UsageError(f"{path.name} line {n} has no \"text\" string")
        texts.append(row["text"])
        labels.append(row.get("label"))
    if any(v is None for v in labels) and not all(v is None for v in labels):
        raise UsageError(f"{path.name}: some lines have a \"label\" and some do not")
    return texts, (labels if labels and labels[0] is not None else None)


def csv_has_text(path: Path) -> bool:
    """A .csv is text data when it has no 'path' column and has a 'text' column or just one column."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    names = [h.strip().lower() for h in header]
    return "path" not in names and ("text" in names or len(names) == 1)


def from_csv(path: Path, io: IOSpec, *, tokenizer, max_length: int | None, limit: int | None = None,
             seed: int = 0) -> Dataset:
    """Text from the 'text' column (or the only column), labels from 'label' when present."""
    if tokenizer is None:
        raise UsageError(f"{path.name} is text, but the model has no tokenizer; give .npz data keyed by input name")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lower() for h in rows[0]]
    col = header.index("text") if "text" in header else 0
    lab = header.index("label") if "label" in header else None
    body = [r for r in rows[1:] if len(r) > col and r[col].strip()]
    texts = [r[col].strip() for r in body]
    labels = [r[lab] for r in body] if lab is not None else None
    if not texts:
        raise UsageError(f"{path.name} holds no texts")
    return from_texts(texts, labels, io, tokenizer=tokenizer, max_length=max_length, source=path.name,
                      limit=limit, seed=seed)


def from_text_file(path: Path, io: IOSpec, *, tokenizer, max_length: int | None, limit: int | None = None,
                   seed: int = 0) -> Dataset:
    if tokenizer is None:
        raise UsageError(f"{path.name} is text, but the model has no tokenizer; "
                         "give .npz data keyed by input name, or a Hugging Face / sentence-transformers folder")
    texts, labels = read_texts(path)
    if not texts:
        raise UsageError(f"{path.name} holds no texts")
    return from_texts(texts, labels, io, tokenizer=tokenizer, max_length=max_length, source=path.name,
                      limit=limit, seed=seed)


def from_texts(texts: list[str], labels, io: IOSpec, *, tokenizer, max_length: int | None, source: str,
               limit: int | None = None, seed: int = 0) -> Dataset:
    if limit and len(texts) > 4 * limit:  # tokenize a random superset only; subsample() stratifies later
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:4 * limit])
        texts = [texts[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    names = [s.name for s in io.inputs]
    samples = []
    for t in texts:
        enc = tokenizer([t], truncation=True, max_length=max_length or 128, return_tensors="np")
        samples.append({n: enc[n].astype("int64") for n in names})
    pad = {"input_ids": int(tokenizer.pad_token_id or 0)}
    label_arr = None
    if labels is not None:
        label_arr = np.array(labels)
        if label_arr.dtype.kind not in "iuf":
            classes = sorted(set(labels))
            label_arr = np.array([classes.index(v) for v in labels])
    return Dataset(samples, labels=label_arr, source=source, kind="text", pad_values=pad, texts=texts)

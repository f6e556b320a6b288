"""Texts -> feeds with the packaged tokenizer (``tokenizer/tokenizer.json``), through the lean
``tokenizers`` library: the same tokenization the export used, without transformers or torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeopt.runtime.errors import BundleError


class TextEncoder:
    def __init__(self, folder: Path, max_length: int, input_names: list[str]):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise BundleError("text input needs the tokenizers package: pip install tokenizers") from None
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise BundleError(f"{folder} has no tokenizer.json; this model was packaged without its tokenizer")
        self.tokenizer = Tokenizer.from_file(str(path))
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            config = json.loads((folder / "tokenizer_config.json").read_text())
        pad = config.get("pad_token") or "[PAD]"
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        pad_id = self.tokenizer.token_to_id(pad)
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad)
        self.input_names = input_names

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        columns = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                   "token_type_ids": [e.type_ids for e in enc]}
        unknown = [n for n in self.input_names if n not in columns]
        if unknown:
            raise BundleError(f"the model's input {unknown[0]!r} is not a tokenizer output; use run(feeds)")
        return {n: np.array(columns[n], dtype=np.int64) for n in self.input_names}

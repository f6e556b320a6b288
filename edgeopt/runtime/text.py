"""Texts -> feeds with the packaged tokenizer (``tokenizer/tokenizer.json``), through the lean
``tokenizers`` library: the same tokenization the export used, without transformers or torch.
The one tokenizer of exported folders: the device's ``Model.embed``, serve's BYTES input, golden
outputs, the demo, recipes and benchmarks all encode with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeopt.runtime.errors import BundleError

_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


class TextEncoder:
    """``TextEncoder(folder)(texts)``: one row per text, padded to the longest, cut at ``max_length``;
    the model's ``input_names`` (default: input_ids, attention_mask and token_type_ids)."""

    def __init__(self, folder: str | Path, max_length: int = 128, input_names: list[str] | None = None):
        folder = Path(folder)
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
        self.input_names = list(input_names or _COLUMNS)

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        columns = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                   "token_type_ids": [e.type_ids for e in enc]}
        unknown = [n for n in self.input_names if n not in columns]
        if unknown:
            raise BundleError(f"the model's input {unknown[0]!r} is not a tokenizer output; use run(feeds)")
        return {n: np.array(columns[n], dtype=np.int64) for n in self.input_names}

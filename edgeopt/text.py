"""Text -> model feeds with the exported tokenizer (``tokenizer/tokenizer.json``).

Uses the lean ``tokenizers`` library (no transformers, no torch), so device-side code can
tokenize exactly as the source model did.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError


class Tokenizer:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_folder(cls, folder: str | Path, *, max_length: int = 128) -> "Tokenizer":
        try:
            from tokenizers import Tokenizer as HfTokenizer
        except ImportError:
            raise UsageError("text input needs the tokenizers package: pip install tokenizers") from None
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise UsageError(f"{folder} has no tokenizer.json; text input needs a model exported with its tokenizer")
        tok = HfTokenizer.from_file(str(path))
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            config = json.loads((folder / "tokenizer_config.json").read_text())
        pad_token = config.get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        pad_id = tok.token_to_id(pad_token)
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad_token)
        return cls(tok, max_length)

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}

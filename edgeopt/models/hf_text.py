"""What the Hugging Face loaders of text share, for text models (hf.py) and CLIP-style dual
encoders (hf_vision.py) alike: the tokenizer inputs a model's forward takes, and sample texts."""

from __future__ import annotations

import inspect

from edgeopt.spec import TensorSpec

# Real product titles in the style of the data our users ship; verification samples.
SAMPLE_TEXTS = [
    "red running shoes",
    "Nike Men Navy Blue Slim Fit Round Neck T-shirt",
    "stainless steel 12 cup programmable coffee maker with thermal carafe",
    "kids waterproof winter boots size 4",
    "wireless noise cancelling over-ear headphones, 30h battery",
    "organic",
]
_ORDER = ("input_ids", "attention_mask", "token_type_ids")


def input_specs(tokenizer, model=None) -> tuple[TensorSpec, ...]:
    """The tokenizer's inputs that the model's forward takes (a BERT tokenizer beside DistilBERT
    emits token_type_ids, which DistilBERT's forward has no parameter for)."""
    names = [n for n in _ORDER if n in tokenizer.model_input_names]
    names += [n for n in tokenizer.model_input_names if n not in names]
    if model is not None and any(accepts(model, n) for n in names):
        names = [n for n in names if accepts(model, n)]
    return tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in names)


def accepts(model, name: str) -> bool:
    """Whether ``model.forward`` names ``name`` as a parameter (transformers' forwards also take
    **kwargs, which would accept anything and fail later)."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False

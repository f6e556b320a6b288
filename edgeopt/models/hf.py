"""Hugging Face and sentence-transformers folders.

A sentence-transformers folder (``modules.json``) is exported with its pooling and normalization,
so the artifact outputs ``sentence_embedding``. A plain Hugging Face folder (``config.json``) is
exported with the head its config names (``architectures``), called by keyword.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeopt.errors import UsageError, first_line
from edgeopt.models.adapter import make_adapter, probe_outputs, torch_reference
from edgeopt.models.base import LoadedModel
from edgeopt.spec import IOSpec, TensorSpec

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


def _offline():
    """Never reach for the hub at run time, and keep library chatter off the user's terminal."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def model_name(path: Path) -> str:
    """A folder called 'model' (as packaged models often are) is named after its parent."""
    return path.parent.name if path.name.lower() in ("model", "models", "") else path.name


def _input_specs(tokenizer) -> tuple[TensorSpec, ...]:
    names = [n for n in _ORDER if n in tokenizer.model_input_names]
    names += [n for n in tokenizer.model_input_names if n not in names]
    return tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in names)


def _text_samples(tokenizer, names, max_length):
    def make():
        out = []
        for texts in (SAMPLE_TEXTS, SAMPLE_TEXTS[:1]):
            enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            out.append({n: enc[n].astype("int64") for n in names})
        return out

    return make


def _check_inputs(inputs, found, path):
    if inputs and [s.name for s in inputs] != [s.name for s in found]:
        raise UsageError(f"--input contradicts {path.name}: its tokenizer gives "
                         f"{', '.join(s.name for s in found)}; drop --input for Hugging Face folders")


def load_sentence_transformers(path: Path, inputs=None) -> LoadedModel:
    _offline()
    import torch

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UsageError("sentence-transformers folders need: pip install 'edgeopt[hf]'") from None
    try:
        st = SentenceTransformer(str(path), device="cpu", trust_remote_code=False).eval()
    except Exception as e:
        raise UsageError(f"{path} is not a loadable sentence-transformers folder: "
                         f"{first_line(e)}") from None
    tokenizer = st.tokenizer
    specs = _input_specs(tokenizer)
    _check_inputs(inputs, specs, path)
    names = [s.name for s in specs]

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *args):
            return (self.st(dict(zip(names, args)))["sentence_embedding"],)

    module = SentenceEmbedding().eval()
    dim = (getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension)()
    io = IOSpec(specs, (TensorSpec("sentence_embedding", "float32", ("batch", dim)),))
    max_length = min(int(st.max_seq_length or 128), 512)
    return LoadedModel(name=model_name(path), source=path, family="sentence-transformers", io=io, module=module,
                       tokenizer=tokenizer, max_length=max_length,
                       reference=torch_reference(module, io),
                       sample_feeds=_text_samples(tokenizer, names, max_length),
                       metadata={"sentence_transformer": st, "task": "embed"})


def load_hf(path: Path, inputs=None) -> LoadedModel:
    _offline()
    try:
        import transformers
    except ImportError:
        raise UsageError("Hugging Face folders need: pip install 'edgeopt[hf]'") from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        arch = (config.architectures or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        cls = cls or transformers.AutoModel
        model = cls.from_pretrained(str(path), trust_remote_code=False).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise UsageError(f"{path} is not a loadable Hugging Face model folder: "
                         f"{first_line(e)}") from None
    specs = _input_specs(tokenizer)
    _check_inputs(inputs, specs, path)
    names = [s.name for s in specs]
    adapter = make_adapter(model, names)
    max_length = min(int(getattr(tokenizer, "model_max_length", 128) or 128), 512)
    samples = _text_samples(tokenizer, names, max_length)
    outputs = probe_outputs(adapter, specs, path.name, feeds=samples()[0])
    outputs = tuple(TensorSpec(o.name, o.dtype, ("batch", "sequence", *o.shape[2:]) if len(o.shape) == 3 else o.shape)
                    for o in outputs)
    io = IOSpec(specs, outputs)
    task = "classify" if arch and arch.endswith("ForSequenceClassification") else None
    return LoadedModel(name=model_name(path), source=path, family="hf", io=io, module=adapter, tokenizer=tokenizer,
                       max_length=max_length, reference=torch_reference(adapter, io),
                       sample_feeds=samples, metadata={"task": task, "architecture": arch})

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
from edgeopt.models.base import LoadedModel, model_name
from edgeopt.models.hf_layers import WIDTHS_KEY, narrow_to, pretrained
from edgeopt.models.hf_text import SAMPLE_TEXTS, accepts, input_specs
from edgeopt.spec import IOSpec, TensorSpec


def _offline():
    """Never reach for the hub at run time, and keep library chatter off the user's terminal."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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


def _pruned_widths(folder: Path) -> list | None:
    """Per-layer widths that `edgeopt prune` recorded in folder/config.json, or None (read before
    sentence-transformers loads the folder, which would refuse the pruned shapes)."""
    import json

    try:
        return json.loads((folder / "config.json").read_text()).get(WIDTHS_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def _st_transformer_folder(path: Path) -> Path:
    """The folder of a sentence-transformers model's Transformer module (modules.json), else path."""
    import json

    try:
        for entry in json.loads((path / "modules.json").read_text()):
            if str(entry.get("type", "")).endswith("Transformer"):
                return path / entry.get("path", "")
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return path


def _restore_pruned(hf_model, folder: Path, widths: list) -> None:
    """Narrow a model loaded at its config's widths to what `edgeopt prune` kept, then load its
    saved (pruned) weights over it."""
    from safetensors.torch import load_file

    narrow_to(hf_model, widths, folder.name)
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise UsageError(f"{folder}: a pruned model needs its model.safetensors beside config.json; "
                         "re-run edgeopt prune")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    try:
        _, unexpected = hf_model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise UsageError(f"{folder}: the saved weights do not fit the recorded pruned widths ({first_line(e)}); "
                         "re-run edgeopt prune") from None
    if unexpected:
        raise UsageError(f"{folder}: weights {', '.join(unexpected[:3])} match no parameter of the pruned model; "
                         "re-run edgeopt prune")


def load_sentence_transformers(path: Path, inputs=None) -> LoadedModel:
    _offline()
    import torch

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UsageError("sentence-transformers folders need: pip install 'edgeopt[hf]'") from None
    inner = _st_transformer_folder(path)
    widths = _pruned_widths(inner)
    kwargs = {"model_kwargs": {"ignore_mismatched_sizes": True}} if widths else {}
    try:
        st = SentenceTransformer(str(path), device="cpu", trust_remote_code=False, **kwargs).eval()
    except Exception as e:
        raise UsageError(f"{path} is not a loadable sentence-transformers folder: {first_line(e)}") from None
    if widths:
        _restore_pruned(pretrained(st), inner, widths)
    tokenizer = st.tokenizer
    specs = input_specs(tokenizer)
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
        widths = getattr(config, WIDTHS_KEY, None)
        kwargs = {"ignore_mismatched_sizes": True} if widths else {}  # narrowed and loaded just below
        model = cls.from_pretrained(str(path), trust_remote_code=False, **kwargs).eval()
    except Exception as e:
        raise UsageError(f"{path} is not a loadable Hugging Face model folder: {first_line(e)}") from None
    if widths:
        _restore_pruned(model, path, widths)
    kind = modality(model)
    if kind == "vision":
        from edgeopt.models.hf_vision import load_vision

        return load_vision(path, model, arch, inputs)
    if kind == "text+vision":
        from edgeopt.models.hf_vision import load_dual_encoder

        return load_dual_encoder(path, model, arch, inputs)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise UsageError(f"{path.name}: {arch or 'the model'} takes text, but its tokenizer does not load "
                         f"({first_line(e)}); save it beside the model with tokenizer.save_pretrained") from None
    specs = input_specs(tokenizer, model)
    _check_inputs(inputs, specs, path)
    names = [s.name for s in specs]
    adapter = make_adapter(model, names)
    max_length = min(int(getattr(tokenizer, "model_max_length", 128) or 128), 512, position_limit(model))
    samples = _text_samples(tokenizer, names, max_length)
    outputs = probe_outputs(adapter, specs, path.name, feeds=samples()[0])
    outputs = tuple(TensorSpec(o.name, o.dtype, ("batch", "sequence", *o.shape[2:]) if len(o.shape) == 3 else o.shape)
                    for o in outputs)
    io = IOSpec(specs, outputs)
    task = "classify" if arch and arch.endswith("ForSequenceClassification") else None
    return LoadedModel(name=model_name(path), source=path, family="hf", io=io, module=adapter, tokenizer=tokenizer,
                       max_length=max_length, reference=torch_reference(adapter, io),
                       sample_feeds=samples, metadata={"task": task, "architecture": arch})


def modality(model) -> str:
    """'text', 'vision' or 'text+vision' (CLIP-style dual encoders), from the forward signature."""
    if accepts(model, "input_ids") and accepts(model, "pixel_values"):
        return "text+vision"
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        return "vision"
    return "text"


def position_limit(model) -> int:
    """The longest sequence the model's position table takes: its rows, less the offset of
    RoBERTa-style tables whose positions start after the padding index (514 rows -> 512 tokens)."""
    import torch

    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding):
            offset = module.padding_idx + 1 if module.padding_idx is not None else 0
            return max(1, module.num_embeddings - offset)
    return 1 << 30

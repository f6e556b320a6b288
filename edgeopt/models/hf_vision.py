"""Hugging Face vision folders (ViT, ConvNeXt, ResNet, MobileNet, EfficientNet, ...) and CLIP-style
dual encoders: no tokenizer, ``pixel_values`` in, preprocessing read from preprocessor_config.json.

The preprocessing (size, resize rule, mean / std) is read from the JSON file itself rather than
through transformers' image processors, whose fast variants need torchvision; it becomes
``metadata["image"]`` (used to calibrate on an image folder) and the manifest's preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.models.adapter import make_adapter, probe_outputs, torch_reference
from edgeopt.models.base import LoadedModel, model_name
from edgeopt.models.hf_text import SAMPLE_TEXTS, input_specs
from edgeopt.spec import IOSpec, TensorSpec

def image_preprocessing(path: Path, config) -> dict:
    """{"size": [h, w], "mean", "std", "rescale", "shortest_edge"?, "resample"} for the model."""
    cfg_file = path / "preprocessor_config.json"
    try:
        proc = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    except ValueError as e:
        raise UsageError(f"{cfg_file} is not valid JSON ({e}); re-save the image processor") from None
    proc = proc.get("image_processor", proc)  # a CLIP processor nests it
    default = getattr(config, "image_size", None) or 224
    default = default if isinstance(default, int) else int(default[0])
    size = proc.get("size", default)
    crop = proc.get("crop_size") if proc.get("do_center_crop", "crop_size" in proc) else None
    shortest = None
    if isinstance(size, int):
        hw = (size, size)
    elif "height" in size:
        hw = (int(size["height"]), int(size["width"]))
    else:  # {"shortest_edge": N}: resize the short side, then crop (crop_size, or N / crop_pct -> N)
        edge = int(size.get("shortest_edge", default))
        if crop:
            hw = (crop, crop) if isinstance(crop, int) else (int(crop["height"]), int(crop["width"]))
            shortest = edge
        elif proc.get("crop_pct"):
            hw, shortest = (edge, edge), round(edge / float(proc["crop_pct"]))
        else:
            hw, shortest = (edge, edge), edge
    if crop and "height" in (size if isinstance(size, dict) else {}):
        hw = (crop, crop) if isinstance(crop, int) else (int(crop["height"]), int(crop["width"]))
    rescale = float(proc.get("rescale_factor", 1 / 255)) if proc.get("do_rescale", True) else 1.0
    normalize = proc.get("do_normalize", True)
    channels = int(getattr(config, "num_channels", 3) or 3)
    prep = {"size": list(hw), "channels": channels, "rescale": rescale,
            "mean": list(proc.get("image_mean", [0.485, 0.456, 0.406])) if normalize else [0.0] * channels,
            "std": list(proc.get("image_std", [0.229, 0.224, 0.225])) if normalize else [1.0] * channels,
            "resample": int(proc.get("resample", 2)),  # PIL's filter numbers, as transformers stores them
            "source": "preprocessor_config.json" if cfg_file.is_file() else "defaults (no preprocessor_config.json)"}
    if shortest:
        prep["shortest_edge"] = shortest
    return prep


def _pixel_spec(prep: dict, inputs) -> TensorSpec:
    if inputs:
        if len(inputs) != 1 or inputs[0].name != "pixel_values" or len(inputs[0].shape) != 4:
            raise UsageError("a Hugging Face vision folder takes one input, pixel_values:Nx3xHxW:float32; "
                             "fix or drop --input")
        spec = inputs[0]
        prep["size"] = [int(spec.shape[2]), int(spec.shape[3])]
        return TensorSpec("pixel_values", "float32", ("batch", *spec.shape[1:]))
    h, w = prep["size"]
    return TensorSpec("pixel_values", "float32", ("batch", prep["channels"], h, w))


def _images(spec: TensorSpec, prep: dict, batch: int, seed: int) -> np.ndarray:
    """Random pixels through the model's own normalization, so samples sit in its input range."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(batch, *spec.shape[1:])).astype(np.float32)
    mean = np.asarray(prep["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(prep["std"], np.float32).reshape(1, -1, 1, 1)
    return ((raw * prep["rescale"] - mean) / std).astype(np.float32)


def _class_names(config) -> list[str] | None:
    labels = getattr(config, "id2label", None) or {}
    names = [labels.get(i, labels.get(str(i))) for i in range(len(labels))]
    return names if names and all(names) and not all(n == f"LABEL_{i}" for i, n in enumerate(names)) else None


def _finish(path, family, model, arch, specs, samples, prep, tokenizer=None, max_length=None) -> LoadedModel:
    names = [s.name for s in specs]
    adapter = make_adapter(model, names, style="kwargs")
    outputs = probe_outputs(adapter, specs, path.name, feeds=samples()[0])
    io = IOSpec(specs, outputs)
    task = "classify" if arch and arch.endswith("ForImageClassification") else ("embed" if tokenizer else None)
    metadata = {"task": task, "architecture": arch, "image": prep, "class_names": _class_names(model.config)}
    return LoadedModel(name=model_name(path), source=path, family=family, io=io, module=adapter,
                       tokenizer=tokenizer, max_length=max_length, reference=torch_reference(adapter, io),
                       sample_feeds=samples, metadata=metadata)


def load_vision(path: Path, model, arch: str | None, inputs=None) -> LoadedModel:
    prep = image_preprocessing(path, model.config)
    spec = _pixel_spec(prep, inputs)

    def samples():
        return [{"pixel_values": _images(spec, prep, batch, seed=batch)} for batch in (2, 1)]

    return _finish(path, "hf", model, arch, (spec,), samples, prep)


def load_dual_encoder(path: Path, model, arch: str | None, inputs=None) -> LoadedModel:
    """CLIP-style: text and image in, both embeddings and their similarity logits out."""
    import transformers

    if inputs:
        raise UsageError(f"--input is not taken for {path.name}: its inputs come from its tokenizer and "
                         "preprocessor_config.json; drop --input")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here means the folder lacks a usable tokenizer
        from edgeopt.errors import first_line

        raise UsageError(f"{path.name}: {arch} takes text and images, but its tokenizer does not load "
                         f"({first_line(e)}); save it beside the model") from None
    config = getattr(model.config, "vision_config", model.config)
    prep = image_preprocessing(path, config)
    pixel = _pixel_spec(prep, None)
    text_specs = input_specs(tokenizer, model)
    specs = (*text_specs, pixel)
    names = [s.name for s in text_specs]
    max_length = min(int(getattr(model.config, "text_config", model.config).max_position_embeddings or 77), 512)

    def samples():
        out = []
        for texts in (SAMPLE_TEXTS[:2], SAMPLE_TEXTS[:1]):
            enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            feeds = {n: enc[n].astype("int64") for n in names}
            feeds["pixel_values"] = _images(pixel, prep, len(texts), seed=len(texts))
            out.append(feeds)
        return out

    return _finish(path, "hf", model, arch, specs, samples, prep, tokenizer=tokenizer, max_length=max_length)

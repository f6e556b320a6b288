"""Tiny real models of the families e-commerce teams ship, built from their configs with random
weights and saved the way a user saves them (save_pretrained + tokenizer / image processor), plus
plain torch models (a GRU session recommender, a two-input ranker) as state dicts.

Each builder takes the output folder and MiniLM's folder (for a real WordPiece tokenizer) and
returns (path, extra export arguments).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
TITLES = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt", "kids winter boots",
          "stainless steel coffee maker with thermal carafe", "wireless over-ear headphones", "cotton kurta",
          "leather wallet for men", "women floral print maxi dress", "analog watch with steel strap"]
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _wordpiece(folder: Path, minilm: Path) -> None:
    for f in TOKENIZER_FILES:
        if (minilm / f).is_file():
            shutil.copy(minilm / f, folder / f)


def _byte_bpe(folder: Path) -> None:
    """A byte-level BPE tokenizer trained on product titles (RoBERTa's kind), saved as RoBERTa's."""
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TITLES * 20, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    tok = transformers.RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"),
                                            merges_file=str(folder / "merges.txt"))
    tok.save_pretrained(str(folder))


def _text(cls_name: str, config_name: str, tokenizer: str, **config):
    def build(folder: Path, minilm: Path):
        import transformers

        vocab = 400 if tokenizer == "bpe" else 30522
        cfg = getattr(transformers, config_name)(vocab_size=vocab, **config)
        getattr(transformers, cls_name)(cfg).save_pretrained(str(folder))
        if tokenizer == "bpe":
            _byte_bpe(folder)
        else:
            _wordpiece(folder, minilm)
        return folder, []

    return build


def _vision(cls_name: str, config_name: str, processor: dict, **config):
    def build(folder: Path, minilm: Path):
        import transformers

        cfg = getattr(transformers, config_name)(**config)
        getattr(transformers, cls_name)(cfg).save_pretrained(str(folder))
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
        return folder, []

    return build


def _clip(folder: Path, minilm: Path):
    import transformers

    text = {"vocab_size": 30522, "max_position_embeddings": 64, **SMALL}
    vision = {"image_size": 32, "patch_size": 8, **SMALL}
    cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    transformers.CLIPModel(cfg).save_pretrained(str(folder))
    _wordpiece(folder, minilm)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
         "image_mean": [0.481, 0.458, 0.408], "image_std": [0.269, 0.261, 0.276], "resample": 3}))
    return folder, []


RECOMMENDER = '''import torch


class SessionGRU(torch.nn.Module):
    """Next-item scores from a session's item ids (GRU4Rec-style)."""

    def __init__(self, n_items=1000, dim=32):
        super().__init__()
        self.items = torch.nn.Embedding(n_items, dim)
        self.gru = torch.nn.GRU(dim, dim, batch_first=True)
        self.out = torch.nn.Linear(dim, n_items)

    def forward(self, item_ids):
        h, _ = self.gru(self.items(item_ids))
        return self.out(h[:, -1])


class Ranker(torch.nn.Module):
    """Click probability from a query embedding and a product's features (two inputs)."""

    def __init__(self, query_dim=16, product_dim=8):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(query_dim + product_dim, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 1))

    def forward(self, query, product):
        return self.mlp(torch.cat([query, product], dim=1))


def session_gru(**kw):
    return SessionGRU(**kw)


def ranker(**kw):
    return Ranker(**kw)
'''


def _torch_model(factory: str, inputs: list[str], data):
    def build(folder: Path, minilm: Path):
        import sys

        import torch

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "recsys_models.py").write_text(RECOMMENDER)
        sys.path.insert(0, str(folder))
        try:
            import importlib

            mod = importlib.import_module("recsys_models")
            torch.manual_seed(0)
            model = getattr(mod, factory)()
        finally:
            sys.path.remove(str(folder))
            sys.modules.pop("recsys_models", None)
        torch.save(model.state_dict(), folder / "model.pt")
        np.savez(folder / "calib.npz", **data(np.random.default_rng(0)))
        args = ["--arch", f"{folder / 'recsys_models.py'}:{factory}"]
        for spec in inputs:
            args += ["--input", spec]
        return folder / "model.pt", args

    return build


def _ctr_model(factory: str, inputs: list[str], data):
    """A CTR ranker of tests/ctr_models.py saved as a state dict, with labelled click rows."""
    def build(folder: Path, minilm: Path):
        import sys

        import torch

        tests = Path(__file__).resolve().parent
        sys.path.insert(0, str(tests))
        try:
            import ctr_models
        finally:
            sys.path.remove(str(tests))
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(getattr(ctr_models, factory)().state_dict(), folder / "model.pt")
        np.savez(folder / "calib.npz", **data(np.random.default_rng(0)))
        args = ["--arch", f"{tests / 'ctr_models.py'}:{factory}"]
        for spec in inputs:
            args += ["--input", spec]
        return folder / "model.pt", args

    return build


def _clicks(rng, n=128):
    return {"cats": rng.integers(0, 100, (n, 8)).astype("int64"),
            "dense": rng.standard_normal((n, 6)).astype("float32"), "labels": rng.integers(0, 2, n).astype("int64")}


def _dict_clicks(rng, n=128):
    rows = {k: rng.integers(0, 50, n).astype("int64") for k in ("user_id", "item_id", "cate_id")}
    return {**rows, "dense": rng.standard_normal((n, 4)).astype("float32"),
            "labels": rng.integers(0, 2, n).astype("int64")}


VISION_PREP = {"size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
               "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "resample": 2}
CNN_PREP = {"size": {"shortest_edge": 32}, "crop_pct": 0.875, "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225], "resample": 3}
LABELS = {"id2label": {0: "bags", 1: "shirts", 2: "shoes"}, "label2id": {"bags": 0, "shirts": 1, "shoes": 2}}

# family -> (builder, kind): kind says which calibration data suits it
FAMILIES = {
    "bert": (_text("BertModel", "BertConfig", "wordpiece", **SMALL), "text"),
    "distilbert": (_text("DistilBertModel", "DistilBertConfig", "wordpiece", dim=32, n_layers=2, n_heads=2,
                         hidden_dim=64), "text"),
    "roberta": (_text("RobertaModel", "RobertaConfig", "bpe", pad_token_id=1, **SMALL), "text"),
    "mpnet": (_text("MPNetModel", "MPNetConfig", "wordpiece", **SMALL), "text"),
    "bert-classifier": (_text("BertForSequenceClassification", "BertConfig", "wordpiece", num_labels=3, **SMALL),
                        "text"),
    "vit": (_vision("ViTForImageClassification", "ViTConfig", VISION_PREP, image_size=32, patch_size=8,
                    num_labels=3, **LABELS, **SMALL), "images"),
    "convnext": (_vision("ConvNextForImageClassification", "ConvNextConfig", CNN_PREP, num_stages=2,
                         hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, **LABELS), "images"),
    "resnet": (_vision("ResNetForImageClassification", "ResNetConfig", CNN_PREP, embedding_size=8,
                       hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, **LABELS), "images"),
    "mobilenet_v2": (_vision("MobileNetV2ForImageClassification", "MobileNetV2Config", CNN_PREP, image_size=32,
                             depth_multiplier=0.25, num_labels=3, **LABELS), "images"),
    "efficientnet": (_vision("EfficientNetForImageClassification", "EfficientNetConfig", CNN_PREP, image_size=32,
                             width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=128, num_labels=3,
                             **LABELS), "images"),
    "clip": (_clip, "npz"),
    "session-gru": (_torch_model("session_gru", ["item_ids:1x12:int64"],
                                 lambda rng: {"item_ids": rng.integers(0, 1000, (96, 12)).astype("int64")}), "npz"),
    # CTR rankers (issue 30): fixed categorical fields as int64 ids, one click logit / probability
    "deepfm": (_ctr_model("deepfm", ["cats:1x8:int64", "dense:1x6:float32"], _clicks), "npz"),
    "dcn": (_ctr_model("dcn", ["cats:1x8:int64", "dense:1x6:float32"], _clicks), "npz"),
    "dict-ranker": (_ctr_model("dict_ranker", ["user_id:1:int64", "item_id:1:int64", "cate_id:1:int64",
                                               "dense:1x4:float32"], _dict_clicks), "npz"),
    "ranker": (_torch_model("ranker", ["query:1x16:float32", "product:1x8:float32"],
                            lambda rng: {"query": rng.standard_normal((96, 16)).astype("float32"),
                                         "product": rng.standard_normal((96, 8)).astype("float32")}), "npz"),
}


def image_folder(folder: Path, classes=("bags", "shirts", "shoes"), per_class: int = 16) -> Path:
    """Class subfolders of real-looking JPEGs: a flat colour per class plus noise, so a model can
    tell them apart after a few steps and top-1 is not constant."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        base = np.zeros(3)
        base[k % 3] = 200
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.jpg")
    return folder


def clip_calibration(path: Path, model, n: int = 64) -> Path:
    """Text + pixel samples for a dual encoder, keyed by its input names."""
    rng = np.random.default_rng(0)
    feeds = {s.name: [] for s in model.io.inputs}
    for i in range(n):
        sample = model.sample_feeds()[1]
        enc = model.tokenizer([TITLES[i % len(TITLES)]], padding="max_length", max_length=12, truncation=True,
                              return_tensors="np")
        for name in feeds:
            if name == "pixel_values":
                feeds[name].append(sample[name][0] + rng.normal(0, 0.1, sample[name][0].shape).astype("float32"))
            else:
                feeds[name].append(enc[name][0].astype("int64"))
    np.savez(path, **{k: np.stack(v) for k, v in feeds.items()})
    return path

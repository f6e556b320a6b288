"""Image data: an ImageFolder tree (one subfolder per class) or a .csv of ``path,label``.

Images are resized to the model input's height x width and normalized with ImageNet mean/std
(``normalize='imagenet'``), or scaled to [0, 1] (``'unit'``), or left as 0..255 (``'none'``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.spec import IOSpec

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _layout(io: IOSpec, image_size) -> tuple[str, str, int, int]:
    if len(io.inputs) != 1 or len(io.inputs[0].shape) != 4:
        raise UsageError("image data needs a model with one 4-D image input; give .npz data instead")
    spec = io.inputs[0]
    channels_first = spec.shape[1] in (1, 3)
    h, w = (spec.shape[2], spec.shape[3]) if channels_first else (spec.shape[1], spec.shape[2])
    if image_size:
        h, w = image_size
    if not (isinstance(h, int) and isinstance(w, int)):
        raise UsageError("the model's image height/width are dynamic; pass --input with a fixed size, e.g. 1x3x224x224")
    return spec.name, "chw" if channels_first else "hwc", h, w


def load_image(path: Path, layout: str, h: int, w: int, normalize: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"{path} is not a readable image ({type(e).__name__})") from None
    if normalize == "imagenet":
        arr = (arr / 255.0 - MEAN) / STD
    elif normalize == "unit":
        arr = arr / 255.0
    if layout == "chw":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr[None], dtype=np.float32)


class LazyImages(list):
    """Image paths that decode on access, so a large folder costs memory only for what is used."""

    def __init__(self, paths, name, layout, h, w, normalize):
        super().__init__(paths)
        self.args = (name, layout, h, w, normalize)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        name, layout, h, w, normalize = self.args
        return {name: load_image(list.__getitem__(self, i), layout, h, w, normalize)}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _dataset(paths, labels, source, io, image_size, normalize) -> Dataset:
    name, layout, h, w = _layout(io, image_size)
    lazy = LazyImages(paths, name, layout, h, w, normalize)
    return Dataset(lazy, labels=labels, source=source, kind="images")


def from_folder(path: Path, io: IOSpec, *, image_size=None, normalize="imagenet") -> Dataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if classes:
        paths, labels = [], []
        for k, c in enumerate(classes):
            files = sorted(f for f in (path / c).iterdir() if f.suffix.lower() in EXTENSIONS)
            paths += files
            labels += [k] * len(files)
        ds = _dataset(paths, np.array(labels), path.name, io, image_size, normalize)
        ds.warnings.append(f"classes: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}")
    else:  # a flat folder of images: unlabeled
        paths = sorted(f for f in path.iterdir() if f.suffix.lower() in EXTENSIONS)
        if not paths:
            raise UsageError(f"{path} holds no images ({', '.join(sorted(EXTENSIONS))}) and no class subfolders")
        ds = _dataset(paths, None, path.name, io, image_size, normalize)
    return ds


def from_csv(path: Path, io: IOSpec, *, image_size=None, normalize="imagenet") -> Dataset:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise UsageError(f"{path.name} needs a header with a 'path' column (and optionally 'label')")
    paths = [path.parent / r["path"] for r in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"{path.name}: {len(missing)} image paths do not exist (first: {missing[0]}); "
                         "paths are relative to the CSV's folder")
    labels = None
    if "label" in rows[0]:
        raw = [r["label"] for r in rows]
        try:
            labels = np.array([int(v) for v in raw])
        except ValueError:
            classes = sorted(set(raw))
            labels = np.array([classes.index(v) for v in raw])
    return _dataset(paths, labels, path.name, io, image_size, normalize)

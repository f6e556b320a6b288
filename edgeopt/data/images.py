"""Image data: an ImageFolder tree (one subfolder per class) or a .csv of ``path,label``.

Images are resized to the model input's height x width and normalized with ImageNet mean/std,
unless the model says otherwise: a Hugging Face vision folder's preprocessor_config.json gives its
size, resize rule, mean and std (``LoadedModel.metadata["image"]``, see ``ImagePrep``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.spec import IOSpec

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class ImagePrep:
    """How a model wants its images: resize (to ``size``, or the shortest edge to ``shortest_edge``
    and then a centre crop to ``size``), scale by ``rescale``, then ``(x - mean) / std``."""

    size: tuple[int, int]
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    rescale: float = 1 / 255
    shortest_edge: int | None = None
    resample: int = 2  # PIL's BILINEAR; BICUBIC is 3

    @classmethod
    def from_metadata(cls, meta: dict | None, size: tuple[int, int], normalize: str = "imagenet") -> "ImagePrep":
        if meta:
            return cls(size=size, mean=tuple(meta.get("mean", MEAN)), std=tuple(meta.get("std", STD)),
                       rescale=meta.get("rescale", 1 / 255), shortest_edge=meta.get("shortest_edge"),
                       resample=int(meta.get("resample", 2)))
        if normalize == "imagenet":
            return cls(size=size)
        return cls(size=size, mean=(0.0,) * 3, std=(1.0,) * 3, rescale=1 / 255 if normalize == "unit" else 1.0)


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


def load_image(path: Path, layout: str, prep: ImagePrep) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    h, w = prep.size
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if prep.shortest_edge:  # resize the short side, keep the aspect ratio, crop the centre
                scale = prep.shortest_edge / min(im.size)
                im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), prep.resample)
                left, top = (im.width - w) // 2, (im.height - h) // 2
                im = im.crop((left, top, left + w, top + h))
            else:
                im = im.resize((w, h), prep.resample)
            arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"{path} is not a readable image ({type(e).__name__})") from None
    # divide by 1 / rescale (255.0 exactly for 1/255): the same float32 values as x / 255
    arr = (arr / np.float32(1 / prep.rescale) - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    if layout == "chw":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr[None], dtype=np.float32)


class LazyImages(list):
    """Image paths that decode on access, so a large folder costs memory only for what is used."""

    def __init__(self, paths, name, layout, prep: ImagePrep):
        super().__init__(paths)
        self.args = (name, layout, prep)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        name, layout, prep = self.args
        return {name: load_image(list.__getitem__(self, i), layout, prep)}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _dataset(paths, labels, source, io, image_size, normalize, image) -> Dataset:
    name, layout, h, w = _layout(io, image_size)
    lazy = LazyImages(paths, name, layout, ImagePrep.from_metadata(image, (h, w), normalize))
    return Dataset(lazy, labels=labels, source=source, kind="images")


def class_ids(folders: list[str], class_names: list[str] | None) -> tuple[list[int], str | None]:
    """Label ids for class folders: the model's own ids when every folder is one of its class names
    (a Hugging Face config's id2label), else the folders' sorted order."""
    if class_names and all(c in class_names for c in folders):
        return [class_names.index(c) for c in folders], None
    if class_names:
        return list(range(len(folders))), ("class folders do not match the model's class names "
                                           f"({', '.join(class_names[:5])}, ...); labels follow the folders' sorted order")
    return list(range(len(folders))), None


def from_folder(path: Path, io: IOSpec, *, image_size=None, normalize="imagenet", image=None,
                class_names=None) -> Dataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if classes:
        ids, warning = class_ids(classes, class_names)
        paths, labels = [], []
        for k, c in zip(ids, classes):
            files = sorted(f for f in (path / c).iterdir() if f.suffix.lower() in EXTENSIONS)
            paths += files
            labels += [k] * len(files)
        ds = _dataset(paths, np.array(labels), path.name, io, image_size, normalize, image)
        ds.warnings.append(f"classes: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}")
        if warning:
            ds.warnings.append(warning)
    else:  # a flat folder of images: unlabeled
        paths = sorted(f for f in path.iterdir() if f.suffix.lower() in EXTENSIONS)
        if not paths:
            raise UsageError(f"{path} holds no images ({', '.join(sorted(EXTENSIONS))}) and no class subfolders")
        ds = _dataset(paths, None, path.name, io, image_size, normalize, image)
    return ds


def from_csv(path: Path, io: IOSpec, *, image_size=None, normalize="imagenet", image=None,
             class_names=None) -> Dataset:
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
            ids, _ = class_ids(classes, class_names)
            labels = np.array([ids[classes.index(v)] for v in raw])
    return _dataset(paths, labels, path.name, io, image_size, normalize, image)

"""Calibration / evaluation data (DESIGN.md: Data): .npz, .txt, .jsonl, image folders, .csv of
images, or ``module.path:callable``. Everything becomes a ``Dataset`` of single-sample feeds that
are checked against the model's input specs, so bad data fails early with a one-line error."""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError
from edgeopt.spec import IOSpec

FORMATS_HELP = (".npz, .txt, .jsonl, an image folder (one subfolder per class), a .csv of path,label (images) "
                "or text[,label], or module:callable")


def is_callable_spec(text: str) -> bool:
    """``module.path:callable`` (the escape hatch), not a file name."""
    return ":" in text and not text.endswith((".npz", ".txt", ".jsonl", ".csv")) and "/" not in text


def check_exists(spec, flag: str | None = None) -> None:
    """A data file or folder that is not there, found before any model is loaded (a teacher can
    take a minute); a ``module:callable`` is checked when it is called."""
    text = str(spec)
    if not Path(text).exists() and not is_callable_spec(text):
        raise UsageError(f"no such data file or folder: {text}" + (f" ({flag})" if flag else ""))


def load_data(spec: str | Path, *, io: IOSpec, tokenizer=None, max_length: int | None = None,
              limit: int | None = None, seed: int = 0, image_size: tuple[int, int] | None = None,
              normalize: str = "imagenet", image: dict | None = None,
              class_names: list[str] | None = None) -> Dataset:
    """Read DATA for a model with inputs ``io.inputs``; keep at most ``limit`` samples (shuffled,
    stratified by label when labels exist). ``image``: the model's image preprocessing
    (``LoadedModel.metadata["image"]``); ``class_names``: its labels in id order, so class folders
    named after them get the model's ids."""
    from edgeopt.data import images, tensors, text

    text_spec = str(spec)
    path = Path(text_spec)
    if not path.exists():
        check_exists(text_spec)
        ds = tensors.from_callable(text_spec, io)
    elif path.is_dir():
        ds = images.from_folder(path, io, image_size=image_size, normalize=normalize, image=image,
                                class_names=class_names)
    elif path.stat().st_size == 0:
        raise UsageError(f"{path.name} is empty; give calibration data with at least one sample")
    elif path.suffix == ".npz":
        ds = tensors.from_npz(path, io)
    elif path.suffix in (".txt", ".jsonl"):
        ds = text.from_text_file(path, io, tokenizer=tokenizer, max_length=max_length, limit=limit, seed=seed)
    elif path.suffix == ".csv" and text.csv_has_text(path):
        ds = text.from_csv(path, io, tokenizer=tokenizer, max_length=max_length, limit=limit, seed=seed)
    elif path.suffix == ".csv":
        ds = images.from_csv(path, io, image_size=image_size, normalize=normalize, image=image,
                             class_names=class_names)
    else:
        raise UsageError(f"unknown data format {path.suffix or path.name!r}; expected {FORMATS_HELP}")
    if not ds.samples:
        raise UsageError(f"{text_spec} holds no samples")
    ds.validate(io)
    return ds.subsample(limit, seed=seed) if limit else ds


__all__ = ["Dataset", "load_data"]

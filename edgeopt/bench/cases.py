"""What ARTIFACT expands to: one ``BenchCase`` per (artifact file, runtime): what one benchmark measures.

ARTIFACT is an ``.onnx`` file, an OpenVINO ``.xml``, a TensorRT ``.plan``, an export folder (every
artifact of its manifest.json, each with its own runtimes), a bundle (``.edgepkg``), or a torch
model that ``edgeopt.models.load_model`` reads (the eager baseline, runtime ``torch``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UsageError, first_line
from edgeopt.manifest import MANIFEST, companions, read_manifest

RUNTIMES = ("onnxruntime", "openvino", "tensorrt", "torch")
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".xml": "openvino", ".plan": "tensorrt", ".engine": "tensorrt", ".ort": "ort"}
DEFAULT_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch",
                   "ort": "onnxruntime"}
CAN_LOAD = {"onnxruntime": ("onnx", "ort"), "openvino": ("openvino", "onnx"), "tensorrt": ("tensorrt",),
            "torch": ("torch",)}
TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".safetensors", ".bin", ".ckpt")


@dataclass(frozen=True)
class BenchCase:
    model: str  # model name (manifest model.name, else the file's stem)
    artifact: str  # file name as matched against a baseline (manifest-relative path)
    path: Path
    format: str
    precision: str
    runtime: str
    bytes: int
    url: str | None = None  # runtime "http": the served model (bench/served.py)

    @property
    def label(self) -> str:
        return f"{self.artifact} [{self.runtime}]"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in (path, *companions(path)))


def _guess_precision(name: str) -> str:
    lower = name.lower()
    return next((p for p in ("int8", "fp16", "bf16") if p in lower), "fp32")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"no such artifact: {path}")
    try:
        if path.is_file():
            with open(path, "rb") as f:
                f.read(1)
            if path.stat().st_size == 0:
                raise UsageError(f"{path} is empty; pass a model artifact")
        else:
            os.listdir(path)
    except PermissionError:
        raise UsageError(f"cannot read {path}: permission denied") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


def _runtimes_for(fmt: str, listed: list[str], wanted: list[str] | None) -> list[str]:
    """The runtimes to bench an artifact on: those asked for that can load its format and that its
    manifest lists (dynamic INT8 ONNX, for one, runs on onnxruntime only). By default an ONNX file is
    not benched on TensorRT, which every ONNX artifact lists: on a machine without a GPU that was a
    row of "unavailable" per file; ``--runtime tensorrt`` (or a .plan) asks for it."""
    if wanted is None:
        own = [r for r in listed if r != "tensorrt" or fmt == "tensorrt"]
        return own or [DEFAULT_RUNTIME[fmt]]
    return [r for r in wanted if fmt in CAN_LOAD[r] and (not listed or r in listed)]


def _from_manifest(folder: Path, wanted: list[str] | None) -> list[BenchCase]:
    manifest = read_manifest(folder)
    name = manifest.name or folder.name
    out = []
    for art in manifest.artifacts:
        path = folder / art.path
        if not path.is_file():
            raise UsageError(f"{folder / MANIFEST} lists {art.path}, which is missing; re-run `edgeopt export`")
        fmt = art.format or FORMAT_OF_SUFFIX.get(path.suffix, "onnx")
        for runtime in _runtimes_for(fmt, art.runtimes, wanted):
            out.append(BenchCase(name, art.path, path, fmt, art.precision, runtime, art.bytes or _size(path)))
    return out


def _enclosing_manifest(path: Path) -> tuple[str, str, str | None] | None:
    """(model name, manifest-relative path, precision) when an export folder lists this file."""
    for folder in (path.parent, path.parent.parent):
        if not (folder / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(folder)
            rel = path.resolve().relative_to(folder.resolve()).as_posix()
        except (UsageError, ValueError):
            continue
        for art in manifest.artifacts:
            if art.path == rel:
                return manifest.name or folder.name, rel, art.precision
    return None


def extract_bundle(path: Path, dest: Path) -> Path:
    """Unpack a bundle with the device's safe extraction (every file checked against its manifest)."""
    from edgeopt.runtime.archive import extract
    from edgeopt.runtime.errors import BundleError

    dest.mkdir(parents=True, exist_ok=True)
    try:
        extract(path, dest)
    except BundleError as e:
        raise UsageError(f"{path} is not a usable bundle: {e}") from None
    return dest


def expand_url(url: str, *, runtimes: list[str] | None) -> list[BenchCase]:
    """A served model (bench/served.py): its case and, when its files are here, the same artifact
    in process."""
    from edgeopt.bench.served import metadata

    try:
        meta = metadata(url)
    except (ValueError, RuntimeError, OSError) as e:
        raise UsageError(f"cannot benchmark {url}: {first_line(e)}") from None
    artifact = str(meta.get("artifact") or meta.get("name"))
    local = Path(meta["folder"]) / artifact if meta.get("folder") else None
    local = local if local is not None and local.is_file() else None
    fmt = FORMAT_OF_SUFFIX.get(Path(artifact).suffix, "onnx")
    precision = str(meta.get("precision") or "fp32")
    path = local or Path(artifact)
    cases = [BenchCase(str(meta["name"]), artifact, path, fmt, precision, "http", _size(local) if local else 0,
                       url=url)]
    runtime = meta.get("runtime") or DEFAULT_RUNTIME[fmt]
    if local is not None and (runtimes is None or runtime in runtimes):
        cases.append(BenchCase(str(meta["name"]), artifact, local, fmt, precision, runtime, _size(local)))
    return cases


def expand(artifact: str | os.PathLike, *, runtimes: list[str] | None, workdir: Path) -> list[BenchCase]:
    """All (artifact, runtime) pairs to benchmark; a UsageError for anything unusable."""
    for r in runtimes or []:
        if r not in RUNTIMES:
            raise UsageError(f"unknown runtime {r!r}; available: {', '.join(RUNTIMES)}")
    if str(artifact).startswith(("http://", "https://")):
        return expand_url(str(artifact), runtimes=runtimes)
    path = Path(artifact)
    _check_readable(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        found = _from_manifest(path, runtimes)
    elif path.suffix == ".edgepkg":
        found = _from_manifest(extract_bundle(path, workdir / "bundle"), runtimes)
    elif path.suffix.lower() in FORMAT_OF_SUFFIX:
        fmt = FORMAT_OF_SUFFIX[path.suffix.lower()]
        if fmt == "openvino" and not path.with_suffix(".bin").is_file():
            raise UsageError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
        known = _enclosing_manifest(path)
        model, rel, precision = known if known else (path.stem, path.name, None)
        found = [BenchCase(model, rel, path.resolve(), fmt, precision or _guess_precision(path.name), r, _size(path))
                 for r in _runtimes_for(fmt, [], runtimes)]
    elif (path.is_dir() and any((path / f).is_file() for f in ("config.json", "modules.json", "model.pt2"))) \
            or (path.is_file() and path.suffix.lower() in TORCH_SUFFIXES):
        if runtimes is not None and "torch" not in runtimes:
            raise UsageError(f"{path} is a torch model: only --runtime torch can run it (the eager baseline)")
        name = path.name if path.is_dir() else path.stem
        found = [BenchCase(name, path.name, path.resolve(), "torch", "fp32", "torch", _size(path))]
    else:
        raise UsageError(f"unknown artifact {path.name!r}: expected .onnx, OpenVINO .xml, TensorRT .plan, "
                         "an export folder with manifest.json, a .edgepkg bundle, or a torch model")
    if not found:
        raise UsageError(f"--runtime {','.join(runtimes or [])} cannot load {path.name} "
                         f"(which runtime loads which format: {CAN_LOAD})")
    return found

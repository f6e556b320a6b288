"""``load(PATH)`` -> ``Model``: pick the artifact and runtime, open one session, run it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeopt.runtime import cache, manifest as manifest_io
from edgeopt.runtime import openvino as ov_engine, ort as ort_engine, tensorrt as trt_engine
from edgeopt.runtime.errors import BundleError

ENGINES = {"tensorrt": trt_engine, "openvino": ov_engine, "onnxruntime": ort_engine}
PREFERENCE = ("tensorrt", "openvino", "onnxruntime")  # the best runtime present wins
RUNTIME_OF_FORMAT = {"tensorrt": "tensorrt", "openvino": "openvino", "onnx": "onnxruntime", "ort": "onnxruntime"}
PRECISION_RANK = {"int8": 0, "fp16": 1, "bf16": 1, "fp32": 2}  # shipped INT8 passed its accuracy gate
_CLASSES = {"onnxruntime": "OrtEngine", "openvino": "OvEngine", "tensorrt": "TrtEngine"}


def _usable(art: dict) -> bool:
    return (art.get("verification") or {}).get("passed", True) is not False


def choose(folder: Path, manifest: dict, *, runtime: str | None = None,
           artifact: str | None = None) -> tuple[dict, str, list[str]]:
    """(artifact record, runtime name, why each better option was passed over)."""
    if runtime is not None and runtime not in ENGINES:
        raise BundleError(f"unknown runtime {runtime!r}; available: {', '.join(ENGINES)}")
    arts = [a for a in manifest.get("artifacts", []) if _usable(a) and (folder / a["path"]).is_file()]
    if artifact is not None:
        arts = [a for a in arts if a["path"] == artifact]
        if not arts:
            listed = [a["path"] for a in manifest.get("artifacts", [])]
            raise BundleError(f"artifact {artifact!r} is not in {folder} (it has: {', '.join(listed) or 'none'})")
    why: list[str] = []
    for name in (runtime,) if runtime else PREFERENCE:
        candidates = [a for a in arts if RUNTIME_OF_FORMAT.get(a.get("format")) == name]
        if not candidates:
            why.append(f"{name}: no artifact for it")
            continue
        if importlib.util.find_spec(ENGINES[name].module) is None:
            why.append(f"{name}: not installed")
            continue
        if name == "tensorrt":
            tag, reason = trt_engine.device_tag()
            candidates = [a for a in candidates if tag and trt_engine.matches(a["path"], tag)]
            if not candidates:
                why.append(f"tensorrt: {reason or f'no engine built for this GPU ({tag})'}")
                continue
        best = min(candidates, key=lambda a: PRECISION_RANK.get(a.get("precision", "fp32"), 3))
        return best, name, why
    raise BundleError(f"no runtime here can run {folder}: " + "; ".join(why))


def _open(path: Path, *, check_hashes: bool, public_key) -> tuple[Path, dict, str | None]:
    """(folder, manifest, temporary folder to remove) for a bundle file or a folder."""
    if path.is_file():
        import shutil
        import tempfile

        from edgeopt.runtime.archive import extract

        tmp = tempfile.mkdtemp(prefix="edgeopt-bundle-")
        try:
            manifest, signed = extract(path, tmp)
            if public_key is not None:
                if not signed:
                    raise BundleError(f"{path} is not signed, and a public key was given")
                from edgeopt.runtime.signature import verify_folder

                verify_folder(Path(tmp), public_key)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Path(tmp), manifest, tmp
    if path.is_dir():
        if not (path / manifest_io.MANIFEST).exists() and (path / "current").is_dir():
            path = path / "current"
        manifest = manifest_io.read(path)
        manifest_io.check_files(path, manifest, hashes=check_hashes)
        if public_key is not None:
            from edgeopt.runtime.signature import verify_folder

            verify_folder(path.resolve(), public_key)  # model-signing refuses a symlinked model path
        return path, manifest, None
    raise BundleError(f"no such bundle or folder: {path}")


class Model:
    """A loaded model: ``run(feeds)``, ``embed(texts)``; ``why`` says what was passed over."""

    def __init__(self, folder: Path, manifest: dict, artifact: dict, runtime: str, why: list[str], engine,
                 cache_note: str):
        self.folder, self.manifest, self.artifact, self.runtime = folder, manifest, artifact, runtime
        self.why, self.engine, self.cache = why, engine, cache_note
        self.inputs = manifest.get("inputs", [])
        self.outputs = manifest.get("outputs", [])
        self._encoder = None

    @property
    def name(self) -> str:
        return self.manifest.get("model", {}).get("name", self.folder.name)

    @property
    def version(self) -> str | None:
        return self.manifest.get("version")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.engine.input_names if n not in feeds]
        if missing:
            raise BundleError(f"missing input {missing[0]!r}; the model takes {', '.join(self.engine.input_names)}")
        dtypes = {i["name"]: i["dtype"] for i in self.inputs}
        return self.engine.run({n: np.ascontiguousarray(feeds[n], dtype=dtypes.get(n)) for n in
                                self.engine.input_names})

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._encoder is None:
            pre = self.manifest.get("preprocessing") or {}
            if not pre.get("tokenizer"):
                raise BundleError(f"{self.name} is not a text model (no packaged tokenizer); use run(feeds)")
            from edgeopt.runtime.text import TextEncoder

            self._encoder = TextEncoder(self.folder / pre["tokenizer"], int(pre.get("max_length") or 128),
                                        [i["name"] for i in self.inputs])
        return self._encoder(texts)

    def embed(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        """One row per text: ``sentence_embedding`` when the model outputs it (sentence-transformers
        exports include pooling and normalization), else the first output, mean-pooled over the
        attention mask when it still has a sequence axis. INT8 artifacts run one text per call by
        default, as their accuracy gate scored them (dynamic INT8 quantizes a call as one tensor)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        step = batch_size or (1 if self.artifact.get("precision") == "int8" else 32)
        names = self.engine.output_names
        out_name = "sentence_embedding" if "sentence_embedding" in names else names[0]
        rows = []
        for i in range(0, len(texts), step):
            feeds = self.tokenize(texts[i:i + step])
            out = self.run(feeds)[out_name]
            if out.ndim == 3:
                mask = feeds.get("attention_mask", np.ones(out.shape[:2], np.int64))[..., None].astype(out.dtype)
                out = (out * mask).sum(1) / np.maximum(mask.sum(1), 1)
            rows.append(out)
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "folder": str(self.folder),
                "artifact": self.artifact["path"], "precision": self.artifact.get("precision"),
                "runtime": self.runtime, "fell_back": self.why, "cache": self.cache}


def load(path: str | Path, *, runtime: str | None = None, artifact: str | None = None, threads: int | None = None,
         check_hashes: bool = False, public_key: str | Path | None = None, use_cache: bool = True,
         prepack: bool = True) -> Model:
    """Load a bundle, an installed model (``DEST/<name>`` or its ``current``) or an export folder.

    A bundle file is unpacked to a temporary folder with every file checked against its sha256; an
    installed folder is checked for every file and its size (install checked the hashes and the
    signature; ``check_hashes=True`` checks them again). ``public_key`` also checks the signature
    (needs the model-signing package). ``runtime`` / ``artifact`` override the choice.
    """
    folder, manifest, tmp = _open(Path(path), check_hashes=check_hashes, public_key=public_key)
    try:
        art, name, why = choose(folder, manifest, runtime=runtime, artifact=artifact)
        module = ENGINES[name]
        cached, cache_dir, note = None, None, "none"
        if use_cache and tmp is None and name in ("onnxruntime", "openvino"):
            found, note = cache.lookup(cache.cache_dir_for(folder), art, name, module.version())
            if found is not None:
                cached = found if found.is_file() else None
                cache_dir = found if found.is_dir() else None
                note = f"install-time {'optimized graph' if cached else 'compiled blob'}: {found}"
        engine = getattr(module, _CLASSES[name])(folder / art["path"], threads=threads,
                                                 precision=art.get("precision", "fp32"), cached=cached,
                                                 prepack=prepack, cache_dir=cache_dir)
    except BaseException:
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        raise
    model = Model(folder, manifest, art, name, why, engine, note)
    if tmp is not None:  # the unpacked bundle lives as long as the model
        import shutil
        import weakref

        weakref.finalize(model, shutil.rmtree, tmp, True)
    return model

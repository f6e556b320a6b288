"""The step cache: content-addressed, verified on every hit, written atomically, never holding a
failure.

A step's key is a full sha256 over what shapes its output: the bytes of its input (the recipe's
model, or the files of the earlier step's cached output), its normalized config (files it names
replaced by their hashes), the data files' hashes, and the versions of edgeopt and of the libraries
that write or score the output. An entry is a folder ``CACHE/<key>/`` with ``output/`` and
``step.json`` (the record, with every output file's sha256); a hit whose files no longer match is
reported, removed and rebuilt. A step runs in ``CACHE/<key>.partial/`` and is renamed into place
only when it succeeded, so a failed, interrupted or killed step leaves no entry (a killed
distill leaves its training checkpoint there, and the next run resumes from it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeopt.atomic import try_lock
from edgeopt.errors import UsageError

RECORD = "step.json"
LIBRARIES = ("torch", "torch-pruning", "onnx", "onnxruntime", "openvino", "nncf", "transformers",
             "sentence-transformers", "tokenizers", "model-signing", "numpy")
_hashes: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _hashes[memo] = h.hexdigest()
    return _hashes[memo]


def tree_files(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``path`` (a file: its own name)."""
    if path.is_file():
        return {path.name: file_sha256(path)}
    return {p.relative_to(path).as_posix(): file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def content_hash(path: Path) -> str:
    """One sha256 for a file or a folder tree (names and bytes)."""
    files = tree_files(path)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    from importlib import metadata

    from edgeopt import __version__

    out: dict[str, str | None] = {"edgeopt": __version__}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def step_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Entry:
    key: str
    folder: Path

    @property
    def output(self) -> Path:
        """The step's output, named after the model (what export and package name it by)."""
        return self.folder / self.record.get("output", "output")

    @property
    def record(self) -> dict:
        return json.loads((self.folder / RECORD).read_text())


class Cache:
    def __init__(self, root: Path):
        self.root = root

    def _prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot write the step cache {self.root}: {e.strerror}; choose a writable --cache or "
                             "-o") from None

    def lookup(self, key: str, *, remove: bool = True) -> tuple[Entry | None, str | None]:
        """(entry, None) on a verified hit; (None, why) when an entry exists but is corrupted (then
        removed, unless ``remove`` is False: a plan only looks); (None, None) on a miss."""
        folder = self.root / key
        if not folder.is_dir():
            return None, None
        entry = Entry(key, folder)
        try:
            want = entry.record["files"]
            have = tree_files(entry.output) if entry.output.exists() else {}
        except (OSError, ValueError, KeyError):
            why = "its record is unreadable"
        else:
            if want == have:
                return entry, None
            changed = sorted(set(want) ^ set(have) | {k for k in set(want) & set(have) if want[k] != have[k]})
            why = f"{changed[0]} differs from what was cached" if changed else "its files differ"
        if remove:
            shutil.rmtree(folder, ignore_errors=True)
        return None, why

    def partial(self, key: str) -> Path:
        self._prepare()
        return self.root / f"{key}.partial"

    def commit(self, key: str, partial: Path, record: dict, output_name: str) -> Entry:
        output = partial / output_name
        record = {**record, "output": output_name, "files": tree_files(output) if output.exists() else {}}
        for stray in partial.iterdir():  # checkpoints and scratch are not part of the entry
            if stray.name != output_name:
                shutil.rmtree(stray) if stray.is_dir() else stray.unlink()
        (partial / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
        folder = self.root / key
        if folder.exists():  # --no-cache over an existing entry
            shutil.rmtree(folder)
        os.rename(partial, folder)
        return Entry(key, folder)

    @contextlib.contextmanager
    def locked(self, key: str):
        """One runner per key at a time (two OUTs sharing a --cache)."""
        self._prepare()
        with try_lock(self.root / f"{key}.lock") as mine:
            if not mine:
                raise UsageError(f"another edgeopt run is building the same step in {self.root}; wait for it "
                                 "to finish")
            yield


@contextlib.contextmanager
def out_lock(out: Path):
    """The second of two runs on the same OUT refuses (exit 2) instead of interleaving writes."""
    with contextlib.ExitStack() as stack:
        try:
            out.mkdir(parents=True, exist_ok=True)
            mine = stack.enter_context(try_lock(out / ".edgeopt-run.lock"))
        except OSError as e:
            raise UsageError(f"cannot write -o {out}: {e.strerror or e}; choose a writable folder") from None
        if not mine:
            raise UsageError(f"another `edgeopt run` is writing {out}; wait for it to finish or choose another -o")
        yield

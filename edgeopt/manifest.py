"""OUT/manifest.json: what export writes and bench/package read (schema in DESIGN.md)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt import __version__
from edgeopt.errors import UsageError
from edgeopt.runtime.manifest import MANIFEST, SCHEMA, sha256_file  # one schema and hash, as the device reads them
from edgeopt.spec import TensorSpec


def companions(path: Path) -> list[Path]:
    """Files an artifact needs beside itself: OpenVINO's weights (.bin), ONNX external data."""
    out = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    out += [p for p in (path.with_name(path.name + ".data"),) if p.exists()]
    return [p for p in out if p.exists()]


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 over the artifact and its companions, and their total size."""
    files = [path, *companions(path)]
    if len(files) == 1:
        return sha256_file(path), path.stat().st_size
    h = hashlib.sha256()
    for f in files:
        h.update(sha256_file(f).encode())
    return h.hexdigest(), sum(f.stat().st_size for f in files)


@dataclass
class ArtifactRecord:
    path: str  # relative to the export folder
    format: str  # onnx | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    runtimes: list[str]
    sha256: str = ""
    bytes: int = 0
    verification: dict = field(default_factory=dict)
    quality: dict | None = None
    fallback_nodes: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"path": self.path, "format": self.format, "precision": self.precision,
             "runtimes": self.runtimes, "sha256": self.sha256, "bytes": self.bytes,
             "verification": self.verification}
        if self.quality is not None:
            d["quality"] = self.quality
        if self.fallback_nodes is not None:
            d["fallback_nodes"] = self.fallback_nodes
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ArtifactRecord":
        known = {"path", "format", "precision", "runtimes", "sha256", "bytes", "verification", "quality",
                 "fallback_nodes"}
        return cls(d["path"], d.get("format") or "", d.get("precision") or "fp32", list(d.get("runtimes") or []),
                   d.get("sha256") or "", int(d.get("bytes") or 0), d.get("verification") or {}, d.get("quality"),
                   d.get("fallback_nodes"), {k: v for k, v in d.items() if k not in known})


@dataclass
class Manifest:
    model: dict
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    task: str | None = None
    int8: dict | None = None  # the INT8 gate's report: metric, candidates, calibration
    not_built: list[dict] = field(default_factory=list)  # {"path", "error"}: a converter that failed

    def to_json(self) -> dict:
        d = {"schema": SCHEMA, "model": self.model,
             "inputs": [t.to_json() for t in self.inputs],
             "outputs": [t.to_json() for t in self.outputs],
             "artifacts": [a.to_json() for a in self.artifacts],
             "preprocessing": self.preprocessing,
             "created_by": f"edgeopt {__version__}",
             "environment": self.environment}
        if self.task:
            d["task"] = self.task
        if self.int8 is not None:
            d["int8"] = self.int8
        if self.not_built:
            d["not_built"] = self.not_built
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Manifest":
        return cls(model=d.get("model") or {}, inputs=[TensorSpec.from_json(t) for t in d.get("inputs", [])],
                   outputs=[TensorSpec.from_json(t) for t in d.get("outputs", [])],
                   artifacts=[ArtifactRecord.from_json(a) for a in d.get("artifacts", [])],
                   preprocessing=d.get("preprocessing") or {}, environment=d.get("environment") or {},
                   task=d.get("task"), int8=d.get("int8"), not_built=list(d.get("not_built") or []))

    @property
    def name(self) -> str:
        return self.model.get("name", "")

    def write(self, folder: Path) -> Path:
        for a in self.artifacts:
            p = folder / a.path
            a.sha256, a.bytes = file_digest(p)
        path = folder / MANIFEST
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read and check OUT/manifest.json; a clear UsageError otherwise."""
    data = read_manifest_data(folder)
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{Path(folder) / MANIFEST} is not a manifest edgeopt can read ({type(e).__name__}: {e}); "
                         "re-run `edgeopt export`") from None


def read_manifest_data(folder: str | os.PathLike) -> dict:
    """OUT/manifest.json as written, every key kept (a bundle carries it on with keys of its own),
    after the same checks as ``read_manifest``."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UsageError(f"{folder} has no {MANIFEST}: pass a folder written by `edgeopt export`")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not valid JSON ({e}); re-run `edgeopt export`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} has schema {data.get('schema') if isinstance(data, dict) else '?'}, "
                         f"expected {SCHEMA}; re-run `edgeopt export` with this edgeopt")
    return data

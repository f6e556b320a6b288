"""One small interface for every inference runtime.

A *runtime* knows whether it is usable here (``availability``) and opens a *session* for an
artifact path. A session exposes its I/O specs and ``run(feeds) -> {output name: array}``.

The session runs the device runtime's engine (edgeopt/runtime/ort.py, openvino.py, tensorrt.py),
the same object ``edgeopt.runtime.load`` opens on a device: export's verification, the INT8 gate,
bench, install's health check and serve all run one executor per runtime. What the build side adds
is here: typed I/O specs (``EngineSession``), availability, and the choice of provider or device.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgeopt.spec import TensorSpec


@dataclass(frozen=True)
class Availability:
    name: str
    ok: bool
    version: str | None = None
    reason: str = ""
    hint: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "available": self.ok, "version": self.version,
                "reason": self.reason or None, "hint": self.hint or None, **self.details}


class Session(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class EngineSession:
    """A device-runtime engine (``engine``) with the I/O specs the build side reads. ``run`` is the
    engine's: feeds it does not take are ignored, outputs come back by name."""

    def __init__(self, engine, inputs: list[TensorSpec], outputs: list[TensorSpec]):
        self.engine, self.inputs, self.outputs = engine, inputs, outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.engine.run(feeds)


class Runtime(Protocol):
    name: str
    formats: tuple[str, ...]  # artifact formats it can load

    def availability(self) -> Availability: ...

    def load(self, path: str, *, threads: int | None = None, device: str = "cpu",
             precision: str = "fp32") -> Session: ...


def dist_version(dist: str) -> str | None:
    """Installed version of a distribution, without importing it (cheap)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def not_installed(name: str, dist: str, hint: str) -> Availability:
    return Availability(name, False, reason=f"{dist} is not installed", hint=hint)

"""One loaded version of one model, as the server runs it: its tensor specs, input checks and
metadata, around the device runtime's ``Model`` (``edgeopt.runtime.load``: the same executors and
packaged tokenizer as install's health check and ``predict``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.serve.protocol import InferRequest, RequestError, TensorSpec, spec_of

TEXT_INPUT = "text"
MAX_TEXTS = 256  # texts per request; one tokenizer call pads them to a common length


@dataclass
class Probation:
    """The first requests a new version answers after a swap: any error, or a p99 over the limit
    once ``size`` requests are in, sends the model back to the version it replaced."""

    size: int
    p99_ms: float | None
    latencies_ms: list[float] = field(default_factory=list)

    def verdict(self) -> str | None:
        """Why the version failed its probation, or None while it passes (or is still in it)."""
        if self.p99_ms is None or len(self.latencies_ms) < self.size:
            return None
        p99 = float(np.percentile(self.latencies_ms, 99))
        return f"p99 {p99:.2f} ms over its first {self.size} requests > --rollback-p99-ms {self.p99_ms:g}" \
            if p99 > self.p99_ms else None


class Served:
    def __init__(self, name: str, version: str, model, digest: str):
        self.name, self.version, self.model, self.digest = name, version, model, digest
        self.inputs = [spec_of(i) for i in model.inputs]
        # named dynamic axes (batch, sequence): inputs that share a name must agree on its size
        self.axes = {i["name"]: list(i.get("shape", [])) for i in model.inputs}
        self.outputs = [spec_of(o) for o in model.outputs]
        self.text = bool((model.manifest.get("preprocessing") or {}).get("tokenizer"))
        files = model.manifest.get("files") or {}
        self.sha256 = (files.get(model.artifact["path"]) or {}).get("sha256") or model.artifact.get("sha256")
        self.loaded_at = time.time()
        self.probation: Probation | None = None
        self.files_changed: str | None = None  # why, when the folder no longer matches what was loaded
        self._inflight = 0
        self._lock = threading.Lock()

    # --- requests -------------------------------------------------------------------------------
    def feeds(self, request: InferRequest, datatypes: dict[str, str]) -> dict[str, np.ndarray]:
        """The runtime's feeds for a request, after checking names, datatypes and shapes."""
        if request.texts:
            if not self.text or set(request.texts) != {TEXT_INPUT} or request.tensors:
                takes = f"a BYTES input {TEXT_INPUT!r}" if self.text else \
                    ", ".join(f"{s.name} {s.datatype}" for s in self.inputs)
                raise RequestError(400, f"{self.name} takes {takes}; got BYTES input(s) "
                                        f"{', '.join(map(repr, request.texts))}")
            texts = request.texts[TEXT_INPUT]
            if not 0 < len(texts) <= MAX_TEXTS:
                raise RequestError(400, f"input {TEXT_INPUT!r}: 1 to {MAX_TEXTS} texts per request, got {len(texts)}")
            return self.model.tokenize(texts)
        specs = {s.name: s for s in self.inputs}
        unknown = [n for n in request.tensors if n not in specs]
        if unknown:
            raise RequestError(400, f"{self.name} has no input {unknown[0]!r}; it takes "
                                    f"{', '.join(specs)}" + (f" (or BYTES {TEXT_INPUT!r})" if self.text else ""))
        missing = [n for n in specs if n not in request.tensors]
        if missing:
            raise RequestError(400, f"input {missing[0]!r} is missing; {self.name} takes {', '.join(specs)}")
        for name, arr in request.tensors.items():
            spec = specs[name]
            if datatypes[name] != spec.datatype:
                raise RequestError(400, f"input {name!r} is {datatypes[name]}; {self.name} takes {spec.datatype}")
            if len(arr.shape) != len(spec.shape) or any(w not in (-1, g) for w, g in zip(spec.shape, arr.shape)):
                raise RequestError(400, f"input {name!r} has shape {list(arr.shape)}; {self.name} takes "
                                        f"{list(spec.shape)} (-1: any size)")
            if 0 in arr.shape:
                raise RequestError(400, f"input {name!r} is empty (shape {list(arr.shape)})")
        sizes: dict[str, tuple[str, int]] = {}
        for name, arr in request.tensors.items():
            for axis, size in zip(self.axes.get(name, []), arr.shape):
                if isinstance(axis, str):
                    first = sizes.setdefault(axis, (name, size))
                    if first[1] != size:
                        raise RequestError(400, f"inputs {first[0]!r} and {name!r} disagree on axis {axis!r} "
                                                f"({first[1]} vs {size})")
        return request.tensors

    def output_names(self, request: InferRequest) -> list[str]:
        known = [o.name for o in self.outputs] or list(self.model.engine.output_names)
        unknown = [n for n in request.outputs if n not in known]
        if unknown:
            raise RequestError(400, f"{self.name} has no output {unknown[0]!r}; it has {', '.join(known)}")
        return request.outputs or known

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self._inflight += 1
        try:
            return self.model.run(feeds)
        finally:
            with self._lock:
                self._inflight -= 1

    @property
    def inflight(self) -> int:
        return self._inflight

    # --- metadata -------------------------------------------------------------------------------
    def metadata(self) -> dict:
        inputs = [s.to_json() for s in self.inputs]
        if self.text:
            inputs.append(TensorSpec(TEXT_INPUT, "BYTES", (-1,)).to_json())
        platform = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "tensorrt": "tensorrt_plan"}
        meta = {"name": self.name, "versions": [self.version], "platform": platform.get(self.model.runtime,
                                                                                     self.model.runtime),
                "inputs": inputs, "outputs": [s.to_json() for s in self.outputs], "version": self.version,
                "sha256": self.sha256, "runtime": self.model.runtime, "artifact": self.model.artifact["path"],
                "precision": self.model.artifact.get("precision"),
                "folder": str(Path(self.model.folder).absolute())}  # `edgeopt bench URL` runs it in process too
        if self.files_changed:
            meta["files_changed"] = self.files_changed
        return meta

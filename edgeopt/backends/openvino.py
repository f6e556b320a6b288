"""OpenVINO: loads IR (.xml + .bin) or ONNX on the CPU.

On CPUs with bf16 support OpenVINO computes FP32 models in bf16 by default; an FP32 artifact is
run with INFERENCE_PRECISION_HINT=f32 so that its numbers match the source model. Text models whose
IR carries sequence-length buckets also run as static-shape variants (buckets.py).
"""

from __future__ import annotations

import atexit
import threading
from collections import Counter

import numpy as np

from edgeopt.backends.base import Availability, dist_version, not_installed
from edgeopt.backends.buckets import ShapeBuckets, read_from_ir, sequence_feeds
from edgeopt.errors import first_line
from edgeopt.spec import TensorSpec

_OV_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i64": "int64",
              "i32": "int32", "i8": "int8", "u8": "uint8", "boolean": "bool"}


def _spec(port, i: int) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else f"dim{j}"
                  for j, d in enumerate(port.get_partial_shape()))
    from edgeopt.runtime.openvino import port_name

    name = port_name(port, f"output{i}")
    return TensorSpec(name, _OV_DTYPES.get(port.get_element_type().get_type_name(), "float32"), shape)


HOT_CALLS = 3  # a bucket's static variant is compiled once the bucket has served this many calls
MAX_VARIANTS = 3  # static variants per session (8, 16 and 32 tokens cover 100 % of Myntra titles)
_PENDING: set = set()  # compile threads still running, joined at exit: never tear the plugin down mid-compile


@atexit.register
def _join_pending() -> None:
    for thread in list(_PENDING):
        thread.join()


class OvSession:
    """One compiled model; with ``buckets`` (default: those the IR carries, see buckets.py) also a
    static-shape variant per sequence bucket, at batch 1, once that bucket is in use.

    A variant is compiled in a background thread after its bucket has served ``HOT_CALLS`` calls
    (so a cold start, or a one-off length, never waits for a compile), at most ``max_variants`` of
    them (each costs about a model's worth of memory: ~100 MB for MiniLM INT8); until it is ready,
    and for inputs longer than every bucket, the dynamic model answers. ``settle()`` waits for
    pending compiles, ``prepare(feeds)`` compiles the variant for ``feeds`` now."""

    def __init__(self, path: str, *, threads: int | None, precision: str, cache_dir: str | None = None,
                 buckets: ShapeBuckets | bool | None = None, max_variants: int = MAX_VARIANTS):
        import openvino as ov

        self.core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else
                  ("f16" if precision == "fp16" else "bf16"),
                  "PERFORMANCE_HINT": "LATENCY"}
        if precision == "int8":
            config.pop("INFERENCE_PRECISION_HINT")  # int8 kernels; non-quantized parts keep the default
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if cache_dir:
            config["CACHE_DIR"] = cache_dir
        self.path, self.config = str(path), config
        self.compiled = self.core.compile_model(self.path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = [_spec(p, i) for i, p in enumerate(self.compiled.inputs)]
        self.outputs = [_spec(p, i) for i, p in enumerate(self.compiled.outputs)]
        if buckets is None:
            buckets = read_from_ir(self.path) if self.path.endswith(".xml") else None
        self.buckets = buckets or None
        self.max_variants = max_variants
        # outputs whose axis 1 is dynamic carry the sequence: cut back to the input's length
        shapes = [p.get_partial_shape() for p in self.compiled.outputs]
        self._seq_axis = [s.rank.is_static and s.rank.get_length() >= 2 and s[1].is_dynamic for s in shapes]
        self._variants: dict[tuple[int, int], tuple] = {}
        self._pending: dict[tuple[int, int], threading.Thread] = {}
        self._calls: Counter = Counter()
        self.failed: dict[tuple[int, int], str] = {}
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = {i.name for i in self.inputs}
        feeds = {k: v for k, v in feeds.items() if k in wanted}
        key = self._bucket_key(feeds)
        variant = self._variants.get(key) if key is not None else None
        if variant is None:
            if key is not None:
                self._calls[key] += 1
                if self._calls[key] >= HOT_CALLS:
                    self._start(key)
            return self.run_dynamic(feeds)
        length = next(iter(feeds.values())).shape[1]
        result = variant[1].infer(self.buckets.pad_feeds(feeds, key[1]))
        return {spec.name: np.asarray(result[i])[:, :length] if seq else np.asarray(result[i])
                for i, (spec, seq) in enumerate(zip(self.outputs, self._seq_axis))}

    def run_dynamic(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The dynamic-shape model alone, whatever the buckets."""
        wanted = {i.name for i in self.inputs}
        result = self.request.infer({k: v for k, v in feeds.items() if k in wanted})
        return {spec.name: np.asarray(result[i]) for i, spec in enumerate(self.outputs)}

    def _bucket_key(self, feeds) -> tuple[int, int] | None:
        """(1, bucket) for a single-sample token feed: the export checked the buckets at batch 1
        (one query or title per call, as a store sends them); larger batches stay dynamic."""
        if self.buckets is None:
            return None
        length = sequence_feeds(feeds)
        size = None if length is None else self.buckets.bucket(length)
        return None if size is None or next(iter(feeds.values())).shape[0] != 1 else (1, size)

    def _start(self, key) -> None:
        with self._lock:
            if (key in self._variants or key in self._pending or key in self.failed
                    or len(self._variants) + len(self._pending) >= self.max_variants):
                return
            thread = threading.Thread(target=self._compile, args=(key,), daemon=True,
                                      name=f"edgeopt-openvino-bucket-{key[0]}x{key[1]}")
            self._pending[key] = thread
            _PENDING.add(thread)
        thread.start()

    def _compile(self, key) -> None:
        try:
            model = self.core.read_model(self.path)
            model.reshape({p.get_any_name(): list(key) for p in model.inputs})
            compiled = self.core.compile_model(model, "CPU", self.config)
            with self._lock:
                self._variants[key] = (compiled, compiled.create_infer_request())
        except Exception as e:  # noqa: BLE001 - a variant that cannot compile leaves the dynamic model in charge
            with self._lock:
                self.failed[key] = f"{type(e).__name__}: {first_line(e, 1000)}"  # kept for inspection; never retried
        finally:
            with self._lock:
                self._pending.pop(key, None)
            _PENDING.discard(threading.current_thread())

    def _input_key(self, feeds: dict[str, np.ndarray]) -> tuple[int, int] | None:
        wanted = {i.name for i in self.inputs}
        return self._bucket_key({k: v for k, v in feeds.items() if k in wanted})

    def prepare(self, feeds: dict[str, np.ndarray]) -> bool:
        """Compile the static variant for ``feeds``'s bucket now (limits apply); True when it is ready."""
        key = self._input_key(feeds)
        if key is None:
            return False
        self._start(key)
        self.settle()
        return key in self._variants

    def prepare_all(self, feeds_list) -> None:
        """Compile the static variants for every feed's bucket at once (limits apply), then wait:
        OpenVINO compiles in parallel what :meth:`prepare` would compile one after another."""
        for feeds in feeds_list:
            key = self._input_key(feeds)
            if key is not None:
                self._start(key)
        self.settle()

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the static variants being compiled."""
        for thread in list(self._pending.values()):
            thread.join(timeout)

    @property
    def variants(self) -> list[tuple[int, int]]:
        """(batch, sequence length) of the static variants ready now."""
        return sorted(self._variants)


class OpenVinoRuntime:
    name = "openvino"
    formats = ("openvino", "onnx")

    def availability(self) -> Availability:
        version = dist_version("openvino")
        if version is None:
            return not_installed(self.name, "openvino", "pip install 'edgeopt[openvino]'")
        import openvino as ov

        return Availability(self.name, True, version, details={"devices": ov.Core().available_devices})

    def load(self, path, *, threads=None, device="cpu", precision="fp32", cache_dir=None, buckets=None,
             max_variants=MAX_VARIANTS) -> OvSession:
        return OvSession(path, threads=threads, precision=precision, cache_dir=cache_dir, buckets=buckets,
                         max_variants=max_variants)

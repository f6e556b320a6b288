"""OpenVINO engine (CPU): the one OpenVINO executor, for the device and for the build side alike
(edgeopt.backends.openvino adds I/O specs and availability around it).

Cold start: install compiles the IR once with ``CACHE_DIR`` set (cache.py), so a later process
imports the compiled blob instead of compiling again. Precision hints: an FP32 IR runs with f32 and
an FP16 one with f16 (on CPUs with bf16 OpenVINO would otherwise compute in bf16 and drift from the
verified numbers), a BF16 one with bf16; INT8 keeps the plugin's default for its non-quantized parts.
Text models whose IR carries sequence-length buckets (buckets.py) also run as static-shape variants.
"""

from __future__ import annotations

import atexit
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from edgeopt.runtime.buckets import ShapeBuckets, read_from_ir, sequence_feeds

name = "openvino"
module = "openvino"
_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
HOT_CALLS = 3  # a bucket's static variant is compiled once the bucket has served this many calls
MAX_VARIANTS = 3  # static variants per engine (8, 16 and 32 tokens cover 100 % of Myntra titles)
_PENDING: set = set()  # compile threads still running, joined at exit: never tear the plugin down mid-compile


@atexit.register
def _join_pending() -> None:
    for thread in list(_PENDING):
        thread.join()


def version() -> str:
    import openvino as ov

    return ov.get_version()


def _config(precision: str, threads: int | None, cache_dir: Path | None) -> dict:
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision in _HINTS:
        config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def prepare(src: Path, cache_dir: Path, precision: str) -> None:
    """Compile ``src`` once with ``cache_dir`` as OpenVINO's model cache (install time)."""
    import openvino as ov

    ov.Core().compile_model(str(src), "CPU", _config(precision, None, cache_dir))


def port_name(port, fallback: str) -> str:
    """The name a user knows a port by. OpenVINO merges the names of tensors it folds together (an
    ONNX Cast right after an input: {"C1", "/inner/embedding/Cast_output_0"}, as torch-rechub's
    rankers export), and get_any_name() may then return the exporter's internal one, which no feed
    or manifest uses: a name without the exporter's leading "/" is preferred."""
    names = port.get_names()
    if not names:
        return fallback
    first = port.get_any_name()
    clean = sorted(n for n in names if not n.startswith("/"))
    return first if not first.startswith("/") or not clean else clean[0]


class OvEngine:
    """One compiled model; with ``buckets`` (default: those the IR carries; False: none) also a
    static-shape variant per sequence bucket, at batch 1, once that bucket is in use.

    A variant is compiled in a background thread after its bucket has served ``HOT_CALLS`` calls
    (so a cold start, or a one-off length, never waits for a compile), at most ``max_variants`` of
    them (each costs about a model's worth of memory: ~100 MB for MiniLM INT8); until it is ready,
    and for inputs longer than every bucket, the dynamic model answers. ``settle()`` waits for
    pending compiles, ``prepare(feeds)`` compiles the variant for ``feeds`` now. Each calling thread
    gets its own infer request, so concurrent ``run`` calls (serve's inference threads) are safe."""

    def __init__(self, path: Path, *, threads: int | None = None, precision: str = "fp32",
                 cached: Path | None = None, prepack: bool = True, cache_dir: Path | None = None,
                 buckets: ShapeBuckets | bool | None = None, max_variants: int = MAX_VARIANTS):
        import openvino as ov

        self.core = ov.Core()
        self.path, self.config = str(path), _config(precision, threads, cache_dir)
        self.compiled = self.core.compile_model(self.path, "CPU", self.config)
        self.input_names = [port_name(p, f"input{i}") for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [port_name(p, f"output{i}") for i, p in enumerate(self.compiled.outputs)]
        if buckets is None:
            buckets = read_from_ir(self.path) if self.path.endswith(".xml") else None
        self.buckets: ShapeBuckets | None = buckets or None
        self.max_variants = max_variants
        # outputs whose axis 1 is dynamic carry the sequence: cut back to the input's length
        shapes = [p.get_partial_shape() for p in self.compiled.outputs]
        self._seq_axis = [s.rank.is_static and s.rank.get_length() >= 2 and s[1].is_dynamic for s in shapes]
        self._variants: dict[tuple[int, int], object] = {}
        self._pending: dict[tuple[int, int], threading.Thread] = {}
        self._calls: Counter = Counter()
        self.failed: dict[tuple[int, int], str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _infer(self, compiled, feeds: dict[str, np.ndarray]):
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        return request.infer(feeds)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: feeds[k] for k in self.input_names}
        key = self._bucket_key(feeds)
        variant = self._variants.get(key) if key is not None else None
        if variant is None:
            if key is not None:
                self._calls[key] += 1
                if self._calls[key] >= HOT_CALLS:
                    self._start(key)
            return self.run_dynamic(feeds)
        length = next(iter(feeds.values())).shape[1]
        result = self._infer(variant, self.buckets.pad_feeds(feeds, key[1]))
        return {n: np.asarray(result[i])[:, :length] if seq else np.asarray(result[i])
                for i, (n, seq) in enumerate(zip(self.output_names, self._seq_axis))}

    def run_dynamic(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The dynamic-shape model alone, whatever the buckets."""
        result = self._infer(self.compiled, {k: feeds[k] for k in self.input_names})
        return {n: np.asarray(result[i]) for i, n in enumerate(self.output_names)}

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
                self._variants[key] = compiled
        except Exception as e:  # noqa: BLE001 - a variant that cannot compile leaves the dynamic model in charge
            text = str(e).strip().splitlines()[0][:1000] if str(e).strip() else ""
            with self._lock:
                self.failed[key] = f"{type(e).__name__}: {text}"  # kept for inspection; never retried
        finally:
            with self._lock:
                self._pending.pop(key, None)
            _PENDING.discard(threading.current_thread())

    def _input_key(self, feeds: dict[str, np.ndarray]) -> tuple[int, int] | None:
        return self._bucket_key({k: feeds[k] for k in self.input_names if k in feeds})

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

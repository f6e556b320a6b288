"""The measured process: ``python -m edgeopt.bench.child CONFIG_JSON``.

It imports numpy and the one runtime it measures, nothing else heavy, and reports
``perf_counter_ns`` timestamps (CLOCK_MONOTONIC on Linux, so they compare with the parent's
spawn time): start of this module, runtime imported, session created, first output. In warm mode
it then measures latency, throughput and peak RSS per batch size (see warm.py). Each message is
one stdout line prefixed with MARK, so runtime log noise on stdout cannot confuse the parent.
"""

import time

T_START = time.perf_counter_ns()

import json  # noqa: E402
import sys  # noqa: E402

MARK = "@@edgeopt-bench "
HEAVY = ("torch", "onnxruntime", "openvino", "tensorrt", "onnx", "transformers", "click", "rich", "matplotlib")
# how an address-space cap (RLIMIT_AS) shows up in runtime and loader errors
MEMORY_ERRORS = ("bad_alloc", "cannot allocate", "out of memory", "failed to map segment", "memoryerror")
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch",
                   "http": "http.client"}  # http: a model served over the Open Inference Protocol (served.py)


def peak_rss_mb(resource) -> float:
    """This process's peak RSS. /proc's VmHWM belongs to the current address space; getrusage's
    ru_maxrss survives execve on Linux, so a child forked from a large parent (the demo, after
    loading torch) would report the parent's peak instead of its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(obj: dict) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def make_feeds(specs, *, batch: int, seq_len: int, seed: int = 0, limits: dict | None = None) -> dict:
    """Valid inputs from I/O specs: attention masks of ones, segment ids of zero, token ids from the
    middle of a large vocabulary (ids 1000-1999: no special tokens), any integer input within the
    rows it indexes when the graph says (``limits``, from models/graph_ids.py)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                if axis == 0 and dim != batch:
                    raise ValueError(f"input {spec.name!r} has a static batch of {dim}; cannot run batch {batch}")
                shape.append(dim)
            else:
                shape.append(batch if axis == 0 else seq_len)
        name = spec.name.lower()
        if spec.dtype == "bool":
            arr = np.ones(shape, dtype=bool)
        elif spec.dtype.startswith(("int", "uint")):
            if "mask" in name:
                arr = np.ones(shape, dtype=spec.dtype)
            elif "type" in name or "position" in name:
                arr = np.zeros(shape, dtype=spec.dtype)
            else:
                low, high = (1000, 2000) if "id" in name else (0, 10)
                rows = (limits or {}).get(spec.name)  # one number, or one per column
                if isinstance(rows, list) and (not shape or shape[-1] != len(rows)):
                    rows = min(rows)
                if rows is not None and high > np.min(rows):
                    rows = np.asarray(rows)
                    low, high = (rows // 2 if "id" in name else 0), rows
                arr = rng.integers(low, np.maximum(high, low + 1), size=shape).astype(spec.dtype)
        else:
            arr = rng.standard_normal(shape).astype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        feeds[spec.name] = arr
    return feeds


class TorchSession:
    """The eager torch baseline: edgeopt's own loader and the model's reference function."""

    def __init__(self, path: str, threads, options: dict):
        import torch

        from edgeopt.models import load_model
        from edgeopt.models.arch import parse_kwargs
        from edgeopt.spec import parse_input

        if threads:
            torch.set_num_threads(threads)
        specs = [parse_input(s) for s in options.get("inputs") or []] or None
        self.model = load_model(path, arch=options.get("arch"), arch_kwargs=parse_kwargs(options.get("arch_kwargs")),
                                trust_pickle=bool(options.get("trust_pickle")), inputs=specs)
        self.inputs = list(self.model.io.inputs)
        self.outputs = list(self.model.io.outputs)

    def run(self, feeds):
        return self.model.reference(feeds)


def open_ort_cached(path: str, threads, cache_file: str):
    """ORT with the device's install-time cache: the first start optimizes the graph for this CPU
    into ``cache_file`` (edgeopt.runtime.ort.prepare, what install does), every start loads it."""
    import os

    from edgeopt.backends import get_runtime
    from edgeopt.runtime.ort import prepare

    if not os.path.exists(cache_file):
        prepare(path, cache_file)
    return get_runtime("onnxruntime").load(path, threads=threads, cached=cache_file)


def open_session(cfg: dict):
    runtime, path, threads = cfg["runtime"], cfg["path"], cfg.get("threads")
    cache = cfg.get("cache_dir")
    if runtime == "torch":
        return TorchSession(path, threads, cfg.get("model_options") or {})
    if runtime == "http":
        from edgeopt.bench.served import HttpSession

        return HttpSession(cfg["url"])
    if runtime == "onnxruntime" and cache:
        import os

        return open_ort_cached(path, threads, os.path.join(cache, "model.opt.ort"))
    from edgeopt.backends import get_runtime

    kwargs = {"cache_dir": cache} if runtime == "openvino" and cache else {}
    return get_runtime(runtime).load(path, threads=threads, device=cfg.get("device", "cpu"),
                                     precision=cfg.get("precision", "fp32"), **kwargs)


def warm(session, cfg: dict) -> list[dict]:
    import resource

    from edgeopt.bench import warm as w

    engine = getattr(session, "engine", None)  # the device runtime's engine (edgeopt.backends sessions)
    results = []
    for batch in cfg["batches"]:
        row = {"batch": batch}
        try:
            feeds = make_feeds(session.inputs, batch=batch, seq_len=cfg["seq_len"], limits=cfg.get("limits"))
        except ValueError as e:
            results.append({"batch": batch, "error": str(e)})
            continue

        def call(feeds=feeds):
            session.run(feeds)

        w.warm_up(call, cfg["warmup"])
        if hasattr(engine, "settle"):  # OpenVINO: static-shape variants compile once a shape is in use
            engine.settle()
            w.warm_up(call, cfg["warmup"])
        timed = w.with_slowdown(call, cfg.get("slowdown", 0.0))
        m = w.measure(timed, seconds=cfg["seconds"], blocks=cfg.get("blocks", 4))
        row["latency_ms"] = [round(x / 1e6, 5) for x in m["latency_ns"]]
        row["reference_ms"] = [round(x / 1e6, 5) for x in m["reference_ns"]]
        row["cpu_ms"] = [round(x / 1e6, 5) for x in m["cpu_ns"]]
        row["reference_cpu_ms"] = [round(x / 1e6, 5) for x in m["reference_cpu_ns"]]
        row["concurrent_ips"] = {}
        for workers in cfg.get("concurrency", []):
            if workers <= 1:
                continue
            span = min(cfg["seconds"], 1.0)
            if cfg["runtime"] == "openvino":
                ips = w.openvino_async_throughput(engine.compiled, feeds, jobs=workers, seconds=span)
            else:
                ips = w.parallel_throughput(call, workers=workers, seconds=span)
            row["concurrent_ips"][str(workers)] = ips * batch
        if getattr(engine, "variants", None):  # OpenVINO static-shape variants in use (batch, length)
            row["static_variants"] = [list(v) for v in engine.variants]
        row["peak_rss_mb"] = peak_rss_mb(resource)
        results.append(row)
    return results


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1])
    phase = "import"
    try:
        import importlib

        import numpy  # noqa: F401

        importlib.import_module(RUNTIME_MODULES[cfg["runtime"]])
        t_import = time.perf_counter_ns()
        phase = "load"
        session = open_session(cfg)
        t_load = time.perf_counter_ns()
        phase = "first_inference"
        feeds = make_feeds(session.inputs, batch=1, seq_len=cfg["seq_len"], limits=cfg.get("limits"))
        t_feeds = time.perf_counter_ns()
        session.run(feeds)
        t_first = time.perf_counter_ns()
        emit({"event": "cold", "t_start": T_START, "t_import": t_import, "t_load": t_load,
              "t_feeds": t_feeds, "t_first": t_first,
              "heavy_modules": sorted(m for m in HEAVY if m in sys.modules)})
        if cfg.get("mode") == "warm":
            phase = "warm"
            emit({"event": "warm", "batches": warm(session, cfg)})
    except MemoryError:
        emit({"event": "error", "phase": phase, "error": "MemoryError", "memory": True})
        return 3
    except Exception as e:  # noqa: BLE001 - reported to the parent as an error record
        text = str(e).strip().splitlines()
        emit({"event": "error", "phase": phase, "error": f"{type(e).__name__}: {text[0] if text else ''}"[:500],
              "memory": any(t in str(e).lower() for t in MEMORY_ERRORS)})
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

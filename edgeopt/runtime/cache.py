"""Install-time preparation that every later process reuses (cold start).

An installed version ``DEST/<name>/<version>/`` holds exactly the signed files (so that
``model_signing verify`` still accepts it); what install derives from them on this device lives
beside it in ``DEST/<name>/.cache/<version>/``: the ORT-format optimized graph, OpenVINO's compiled
blob, and ``cache.json`` saying what each entry was made from (artifact sha256, runtime version,
CPU). ``load`` uses an entry only when all three still match, and otherwise the artifact itself:
a stale or missing cache costs time, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

CACHE_FILE = "cache.json"


def cache_dir_for(folder: Path) -> Path:
    real = Path(folder).resolve()
    return real.parent / ".cache" / real.name


def cpu_fingerprint() -> str:
    """The CPU features an optimized graph may depend on: machine and the first CPU's flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].strip()
                    break
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:16]


def read(cache_dir: Path) -> dict:
    try:
        data = json.loads((cache_dir / CACHE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def lookup(cache_dir: Path, artifact: dict, runtime: str, runtime_version: str) -> tuple[Path | None, str]:
    """(prepared file or folder, '') when a valid entry exists, else (None, why not)."""
    entry = read(cache_dir).get(artifact["path"])
    if not entry:
        return None, "no install-time cache"
    if (entry.get("runtime"), entry.get("runtime_version"), entry.get("artifact_sha256"), entry.get("cpu")) != \
            (runtime, runtime_version, artifact.get("sha256"), cpu_fingerprint()):
        return None, "install-time cache is stale (another runtime version, CPU or artifact)"
    path = cache_dir / entry["file"]
    if not path.exists() or (path.is_file() and path.stat().st_size != entry.get("bytes")):
        return None, "install-time cache is incomplete"
    return path, ""


def prepare(folder: Path, artifact: dict, engine_module, cache_dir: Path) -> Path:
    """Build the cache entry for ``artifact`` with its engine's ``prepare``; atomic per entry."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    src = folder / artifact["path"]
    key = artifact["path"].replace("/", "__")
    if engine_module.name == "onnxruntime":
        target = cache_dir / f"{key}.opt.ort"
        tmp = cache_dir / f".{key}.tmp-{os.getpid()}.ort"
        engine_module.prepare(src, tmp)
        os.replace(tmp, target)
    elif engine_module.name == "openvino":
        target = cache_dir / "openvino"
        target.mkdir(exist_ok=True)
        engine_module.prepare(src, target, artifact.get("precision", "fp32"))
    else:
        raise ValueError(f"nothing to prepare for {engine_module.name}")
    entries = read(cache_dir)
    entries[artifact["path"]] = {"file": target.name, "runtime": engine_module.name,
                                 "runtime_version": engine_module.version(),
                                 "artifact_sha256": artifact.get("sha256"), "cpu": cpu_fingerprint(),
                                 "bytes": target.stat().st_size if target.is_file() else None}
    tmp = cache_dir / f".{CACHE_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, cache_dir / CACHE_FILE)
    return target

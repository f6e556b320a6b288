"""qemu user-mode emulation and an aarch64 Python sysroot, installed once into a cache folder.

The sysroot is Debian's own arm64 packages (the suite this machine's APT sources name): the
dynamic loader, libc, libstdc++ and CPython, fetched with ``apt-get download`` through a private
APT state (no root, the system's package database untouched) and unpacked with ``dpkg -x``. Beside
it, the manylinux aarch64 wheels of numpy, onnxruntime and openvino, at the versions installed
here, so both machines run the same releases. qemu itself is a system package: this module only
finds it and checks its version (qemu before 8.1 shows aarch64 programs this machine's x86
/proc/cpuinfo, and onnxruntime's CPU detection crashes on it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeopt.errors import UsageError, first_line

ARCHES = {"aarch64": {"qemu": "qemu-aarch64", "deb": "arm64"}}
MIN_QEMU = (8, 1)
WHEELS = ("numpy", "onnxruntime", "openvino")
# Debian packages of an aarch64 CPython (the closure of python3-minimal, libpython3-stdlib and the
# C++ runtime that onnxruntime / openvino link), minus what only installs or scripts Debian itself.
ROOTS = ("python3-minimal", "libpython3-stdlib", "libstdc++6", "libgcc-s1", "zlib1g")
SKIP = re.compile(r"^(dpkg|perl.*|libperl.*|install-info|tar|debconf.*|readline-common|mailcap|mime-support|"
                  r"python3|libpython3-stdlib|python3-minimal|sensible-utils|base-files|libdb5\.3|libgdbm-compat4)$")
QEMU_HINT = ("install QEMU user-mode emulation 8.1 or newer (Debian 12: add bookworm-backports to the APT sources, "
             "then apt-get install -t bookworm-backports qemu-user; Debian 13 / Ubuntu 24.04: apt-get install "
             "qemu-user), or pass --qemu PATH")


@dataclass(frozen=True)
class Sysroot:
    root: Path  # the unpacked Debian packages
    site: Path  # the unpacked wheels (PYTHONPATH)
    python: Path  # the aarch64 CPython inside root
    versions: dict  # package -> version, as installed


def default_cache(arch: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeopt" / arch


def find_qemu(arch: str, qemu: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(path, version) of a usable qemu user-mode emulator; a one-line UsageError with the install
    command when there is none or it is too old."""
    name = ARCHES[arch]["qemu"]
    found = Path(qemu) if qemu else next((Path(p) for p in map(shutil.which, (name, f"{name}-static")) if p), None)
    if found is None or not found.is_file():
        where = f"--qemu {qemu} does not exist" if qemu else f"{name} not found"
        raise UsageError(f"{where}: {QEMU_HINT}")
    try:
        text = subprocess.run([str(found), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(f"{found} does not run ({first_line(e)}): {QEMU_HINT}") from None
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise UsageError(f"{found} --version did not name a QEMU version: {QEMU_HINT}")
    version = ".".join(g for g in m.groups() if g is not None)
    if (int(m.group(1)), int(m.group(2))) < MIN_QEMU:
        raise UsageError(f"{found} is QEMU {version}; onnxruntime crashes under QEMU before "
                         f"{'.'.join(map(str, MIN_QEMU))} (it reads this machine's /proc/cpuinfo): {QEMU_HINT}")
    return found, version


def load(cache: Path) -> Sysroot | None:
    """The installed sysroot in ``cache``, or None when it is not (completely) installed."""
    try:
        done = json.loads((cache / "installed.json").read_text())
        s = Sysroot(cache / "root", cache / "site", cache / "root" / done["python"], done["versions"])
    except (OSError, ValueError, KeyError):
        return None
    return s if s.python.is_file() and s.site.is_dir() else None


def install(cache: Path, arch: str, log: Callable[[str], None] = lambda m: None) -> Sysroot:
    """Fetch and unpack the sysroot and wheels into ``cache`` (once; minutes, ~250 MB)."""
    found = load(cache)
    if found is not None:
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise UsageError(f"building the {arch} sysroot needs apt-get and dpkg (Debian / Ubuntu); "
                         f"run verify-target on such a machine or fill --cache {cache} from one")
    for sub in ("root", "site", "debs", "wheels"):
        shutil.rmtree(cache / sub, ignore_errors=True)
    apt = _apt_config(cache, ARCHES[arch]["deb"])
    env = {**os.environ, "APT_CONFIG": str(apt), "DEBIAN_FRONTEND": "noninteractive"}
    log(f"fetching the Debian {ARCHES[arch]['deb']} package lists")
    _run(["apt-get", "update", "-qq"], env, "apt-get update")
    packages = _closure(env)
    log(f"downloading {len(packages)} Debian {ARCHES[arch]['deb']} packages")
    (cache / "debs").mkdir(parents=True)
    _run(["apt-get", "download", "-qq", *packages], env, "apt-get download", cwd=cache / "debs")
    (cache / "root").mkdir()
    for deb in sorted((cache / "debs").glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(cache / "root")], env, f"dpkg -x {deb.name}")
    pythons = sorted((cache / "root" / "usr" / "bin").glob("python3.[0-9]*"))
    if not pythons:
        raise UsageError(f"the {arch} packages hold no python3.X under {cache / 'root' / 'usr' / 'bin'}")
    python = pythons[-1]
    pyver = python.name.removeprefix("python")
    versions = {name: _host_version(name) for name in WHEELS}
    log(f"downloading the {arch} wheels of {', '.join(f'{k} {v}' for k, v in versions.items())}")
    tags = [f"--platform=manylinux{t}_{arch}" for t in ("2014", "_2_17", "_2_28", "_2_31", "_2_34", "_2_35", "_2_36")]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *tags,
          f"--python-version={pyver}", "--implementation=cp", "-d", str(cache / "wheels"),
          *(f"{k}=={v}" for k, v in versions.items())], os.environ, "pip download")
    (cache / "site").mkdir()
    for wheel in sorted((cache / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(cache / "site")
    shutil.rmtree(cache / "debs", ignore_errors=True)
    shutil.rmtree(cache / "wheels", ignore_errors=True)
    versions["python"] = pyver
    (cache / "installed.json").write_text(json.dumps({"python": str(python.relative_to(cache / "root")),
                                                      "versions": versions}, indent=1))
    return load(cache)


def _apt_config(cache: Path, deb_arch: str) -> Path:
    """A private APT state for ``deb_arch`` over this machine's own sources."""
    state, archives = cache / "apt" / "state", cache / "apt" / "cache"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (archives / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    path = cache / "apt" / "apt.conf"
    path.write_text(f'APT::Architecture "{deb_arch}";\nAPT::Architectures {{ "{deb_arch}"; }};\n'
                    f'Dir::State "{state}";\nDir::State::status "{state}/status";\nDir::Cache "{archives}";\n')
    return path


def _closure(env: dict) -> list[str]:
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *ROOTS], env, "apt-cache depends")
    names = {line.strip() for line in out.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(n for n in names if not SKIP.match(n))


def _host_version(name: str) -> str:
    from edgeopt.backends.base import dist_version

    version = dist_version(name)
    if version is None:
        raise UsageError(f"{name} is not installed here; verify-target compares against this machine's {name} "
                         f"(pip install {name})")
    return version


def _run(cmd: list[str], env: dict, what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(f"{what} failed ({first_line(e)}) while installing the sysroot") from None
    if proc.returncode != 0:
        raise UsageError(f"{what} failed while installing the sysroot: {first_line(proc.stderr or proc.stdout)}")
    return proc.stdout

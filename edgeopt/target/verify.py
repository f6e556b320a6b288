"""``verify_target(out, arch="aarch64")``: every ONNX / ORT / OpenVINO artifact of an export folder,
run on aarch64 under qemu on the golden inputs and compared with this machine's outputs.

The golden inputs are the package command's (bundle/golden.py: the tokenizer on fixed titles, else
seeded random tensors); a static-shape ``.ort`` gets them cut or padded to its shapes, one sample
at a time. Both machines run the artifact through edgeopt.runtime's engines (target/child.py).
FP32 / FP16 pass within the golden check's cross-device tolerance (cosine >= 0.9999 for FP32).
INT8 kernels differ by ISA (x86 VNNI / AVX2 vs ARM NEON dot products round differently), so an
INT8 artifact passes when the INT8 gate's metric between the two machines' outputs loses at most
the gate's ``--max-drop`` (cosine: 1 - mean cosine; top1: 1 - top-1 agreement); the differences
are recorded either way. The verdicts go into OUT/manifest.json (``targets.<arch>`` per artifact and
overall), rewritten atomically; nothing else in OUT changes. An emulated pass is necessary, not
sufficient: onnxruntime builds that ran under emulation have hit "Illegal instruction" on real
aarch64 boards (onnxruntime #24512, #23957), so the manifest says the check was emulated.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import UsageError, first_line
from edgeopt.manifest import MANIFEST, read_manifest_data

FORMATS = {"onnx": "onnxruntime", "ort": "onnxruntime", "openvino": "openvino"}
NOTE = ("emulated with qemu user mode: necessary, not sufficient; onnxruntime builds that ran under emulation "
        "have hit 'Illegal instruction' on real aarch64 boards (onnxruntime #24512, #23957): run the golden "
        "check on a device too")
Runner = Callable[[Path], dict]  # runs child.py on the target for a job folder; returns what ran it


@dataclass
class TargetResult:
    out: Path
    arch: str
    passed: bool
    artifacts: dict[str, dict] = field(default_factory=dict)  # manifest path -> verdict and differences
    emulator: dict = field(default_factory=dict)  # qemu / python / runtime versions on the target


class QemuRunner:
    """Runs the child in the cache's aarch64 Python under qemu-user (installing the cache once)."""

    def __init__(self, arch: str, cache: Path, qemu: str | None, log: Callable[[str], None], timeout: float = 3600):
        from edgeopt.target import sysroot

        self.qemu, self.qemu_version = sysroot.find_qemu(arch, qemu)  # first: a missing qemu fails fast
        self.sysroot = sysroot.install(cache, arch, log)
        self.timeout = timeout

    def __call__(self, job_dir: Path) -> dict:
        s = self.sysroot
        root = Path(__file__).resolve().parents[2]  # the folder holding the edgeopt package
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_", "QEMU_"))}
        env.update(PYTHONPATH=f"{s.site}{os.pathsep}{root}", PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")
        cmd = [str(self.qemu), "-L", str(s.root), str(s.python), "-m", "edgeopt.target.child", str(job_dir)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise UsageError(f"the aarch64 run took over {self.timeout:.0f} s under qemu; check fewer artifacts") from None
        if proc.returncode != 0:
            raise UsageError(f"the aarch64 Python failed under qemu (exit {proc.returncode}): "
                             f"{first_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '')}")
        return {"emulator": f"qemu-user {self.qemu_version}", **s.versions}


def _artifacts(out: Path, manifest: dict) -> list[dict]:
    arts = [a for a in manifest.get("artifacts", []) if a.get("format") in FORMATS
            and (a.get("verification") or {}).get("passed") is not False]
    if not arts:
        listed = ", ".join(f"{a['path']} ({a.get('format')})" for a in manifest.get("artifacts", [])) or "none"
        raise UsageError(f"{out} has no verified ONNX, ORT or OpenVINO artifact to run on another CPU "
                         f"(it lists: {listed}); export with --to onnx or --to mobile")
    for a in arts:
        if not (out / a["path"]).is_file():
            raise UsageError(f"{out / MANIFEST} lists {a['path']}, which is missing; re-run `edgeopt export`")
    return arts


def _samples(art: dict, feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    shapes = art.get("static_shapes")
    if not shapes:
        return [feeds]
    from edgeopt.export.mobile import fit

    rows = len(next(iter(feeds.values())))
    return [fit({k: v[i:i + 1] for k, v in feeds.items()}, shapes) for i in range(rows)]


def _write_job(job: Path, out: Path, arts: list[dict], feeds: dict) -> None:
    items = []
    for i, art in enumerate(arts):
        samples = _samples(art, feeds)
        np.savez(job / f"a{i}.in.npz", samples=np.array(len(samples)),
                 **{f"{j}/{k}": v for j, s in enumerate(samples) for k, v in s.items()})
        items.append({"key": f"a{i}", "path": str((out / art["path"]).resolve()), "runtime": FORMATS[art["format"]],
                      "precision": art.get("precision", "fp32"), "inputs": f"a{i}.in.npz"})
    (job / "job.json").write_text(json.dumps({"artifacts": items}))


def _read(job: Path, key: str) -> tuple[list[dict] | None, dict]:
    status_file = job / f"{key}.status.json"
    if not status_file.is_file():
        return None, {"ok": False, "error": "the run ended before this artifact"}
    status = json.loads(status_file.read_text())
    if not status.get("ok"):
        return None, status
    with np.load(job / f"{key}.out.npz", allow_pickle=False) as f:
        by_sample: dict[int, dict] = {}
        for k in f.files:
            i, name = k.split("/", 1)
            by_sample.setdefault(int(i), {})[name] = f[k]
    return [by_sample[i] for i in sorted(by_sample)], status


def _run_here(job: Path) -> dict:
    """This machine's outputs, through the same child code (in-process)."""
    from edgeopt.target.child import run_job

    run_job(job)
    return {}


def compare_outputs(art: dict, here: list[dict], there: list[dict], int8_gate: dict | None) -> dict:
    """The differences and the verdict for one artifact (see the module docstring)."""
    from edgeopt.bundle.golden import _tolerance
    from edgeopt.export.verify import Tolerance, compare

    precision = art.get("precision", "fp32")
    tol = _tolerance(precision)
    result = compare(here, there, Tolerance(tol["atol"], tol["rtol"], tol["min_cosine"]))
    if precision != "int8" or "error" in result:
        return result
    gate = int8_gate or {}
    metric = gate.get("metric") or "cosine"
    max_drop = (art.get("verification") or {}).get("max_drop") or gate.get("max_drop") or 0.005
    if metric == "top1":
        agree = [np.argmax(h[n], -1) == np.argmax(t[n], -1) for h, t in zip(here, there) for n in h
                 if np.asarray(h[n]).dtype.kind == "f"]
        drop = 1.0 - float(np.concatenate([a.ravel() for a in agree]).mean())
    else:  # cosine and every other metric: how far the aarch64 outputs are from this machine's
        metric, drop = "cosine", 1.0 - result["cosine_mean"]
    result.update(within_tolerance=result["passed"], gate_metric=metric, drop=drop, max_drop=max_drop,
                  passed=bool(drop <= max_drop))
    return result


def verify_target(out: str | os.PathLike, *, arch: str = "aarch64", cache: str | os.PathLike | None = None,
                  qemu: str | os.PathLike | None = None, runner: Runner | None = None,
                  log: Callable[[str], None] = lambda m: None) -> TargetResult:
    """Run OUT's artifacts on ``arch`` and record the verdicts in OUT/manifest.json (see above).
    ``runner`` replaces the qemu run (tests); a UsageError leaves OUT untouched."""
    from edgeopt.bundle import golden as golden_io
    from edgeopt.target.sysroot import ARCHES, default_cache

    out = Path(out)
    if arch not in ARCHES:
        raise UsageError(f"--arch {arch}: unsupported; choose from {', '.join(ARCHES)}")
    manifest = read_manifest_data(out)
    arts = _artifacts(out, manifest)
    if runner is None:
        runner = QemuRunner(arch, Path(cache) if cache else default_cache(arch), None if qemu is None else str(qemu), log)
    feeds = golden_io.make_inputs(out, manifest, None)
    with tempfile.TemporaryDirectory(prefix="edgeopt-target-") as tmp:
        here_dir, there_dir = Path(tmp) / "here", Path(tmp) / "there"
        for d in (here_dir, there_dir):
            d.mkdir()
            _write_job(d, out, arts, feeds)
        log(f"running {len(arts)} artifact(s) on this machine")
        _run_here(here_dir)
        log(f"running {len(arts)} artifact(s) on {arch} (emulated; minutes)")
        emulator = runner(there_dir)
        verdicts = {}
        for i, art in enumerate(arts):
            here, here_status = _read(here_dir, f"a{i}")
            there, status = _read(there_dir, f"a{i}")
            if here is None:
                verdicts[art["path"]] = {"passed": False, "error": f"did not run here: {here_status.get('error')}"}
            elif there is None:
                verdicts[art["path"]] = {"passed": False, "error": f"did not run on {arch}: {status.get('error')}"}
            else:
                verdicts[art["path"]] = {**compare_outputs(art, here, there, manifest.get("int8")),
                                         "machine": status.get("machine"),
                                         "runtime": f"{FORMATS[art['format']]} {status.get('runtime_version')}"}
    passed = all(v["passed"] for v in verdicts.values())
    _record(out, manifest, arch, verdicts, emulator, passed)
    return TargetResult(out, arch, passed, verdicts, emulator)


def _record(out: Path, manifest: dict, arch: str, verdicts: dict, emulator: dict, passed: bool) -> None:
    """Write the verdicts into OUT/manifest.json atomically (a temporary file, then a rename)."""
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for art in manifest.get("artifacts", []):
        if art["path"] in verdicts:
            art.setdefault("targets", {})[arch] = {**verdicts[art["path"]], "emulated": True}
    manifest.setdefault("targets", {})[arch] = {"passed": passed, "checked": when, "emulated": True,
                                                **emulator, "artifacts": sorted(verdicts), "note": NOTE}
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=out)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
        shutil.copymode(out / MANIFEST, tmp)
        os.replace(tmp, out / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


"""``edgeopt package``: an export folder -> one signed ``.edgepkg``.

The bundle holds the verified artifacts (with their companions), the tokenizer, golden inputs and
outputs for the install-time health check, the evidence (verification and INT8 gate results from
the export manifest, an optional benchmark document) and manifest.json with ``version`` and
``files``; ``model.sig`` signs every other file. Written to a temporary file and renamed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt import __version__
from edgeopt.bundle import golden as golden_io
from edgeopt.bundle.versions import default_version, parse_expires, parse_version, safe_name
from edgeopt.errors import GateError, UsageError
from edgeopt.manifest import MANIFEST, companions, file_digest, read_manifest_data, sha256_file
from edgeopt.runtime.manifest import SIGNATURE
from edgeopt.runtime.durable import fsync_file

SUFFIX = ".edgepkg"
TARGETS = {"mobile": "ort"}  # --target -> the one artifact format it ships (ORT Mobile: .ort, export --to mobile)


@dataclass
class PackageResult:
    bundle: Path
    name: str
    version: str
    artifacts: list[str]
    files: int
    bytes: int
    signed: bool
    key_id: str | None = None
    expires: str | None = None
    skipped: list[str] = field(default_factory=list)  # export artifacts left out, with the reason
    health: dict = field(default_factory=dict)
    delta: dict | None = None  # with --base: the base version, full vs delta bytes, how each file ships


def _select(out: Path, manifest: dict, wanted: list[str] | None,
            target: str | None = None) -> tuple[list[dict], list[str]]:
    arts = manifest.get("artifacts", [])
    if target is not None:
        arts = [a for a in arts if a.get("format") == TARGETS[target]]
        if not arts:
            raise UsageError(f"--target {target}: {out / MANIFEST} lists no .{TARGETS[target]} artifact; "
                             f"export with --to onnx,{target}")
    if wanted:
        unknown = [w for w in wanted if w not in {a["path"] for a in arts}]
        if unknown:
            raise UsageError(f"--artifact {unknown[0]}: not in {out / MANIFEST} "
                             f"(it lists {', '.join(a['path'] for a in arts)})")
    chosen, skipped = [], []
    for art in arts:
        if wanted and art["path"] not in wanted:
            continue
        if not wanted and target is None and art.get("format") in TARGETS.values():
            skipped.append(f"{art['path']}: for ORT Mobile (package --target mobile ships it)")
            continue
        if art.get("static_shapes"):  # the golden check feeds every length; an NNAPI / CoreML app takes it from OUT
            skipped.append(f"{art['path']}: fixed input shapes {art['static_shapes']}, not packaged")
            continue
        if (art.get("verification") or {}).get("passed") is False:
            skipped.append(f"{art['path']}: failed verification or its gate at export")
            continue
        path = out / art["path"]
        if not path.is_file():
            raise UsageError(f"{out / MANIFEST} lists {art['path']}, which is missing; re-run `edgeopt export`")
        if art.get("sha256") and file_digest(path)[0] != art["sha256"]:
            raise UsageError(f"{art['path']} changed since `edgeopt export` wrote {MANIFEST}; re-run the export")
        chosen.append(art)
    if not chosen:
        raise GateError(f"{out}: no verified artifact to package ({'; '.join(skipped) or 'none listed'})")
    return chosen, skipped


def _copy_payload(out: Path, stage: Path, arts: list[dict], manifest: dict) -> None:
    for art in arts:
        src = out / art["path"]
        needs = [out / art["operator_config"]] if art.get("operator_config") else []  # a reduced ORT build's ops
        for f in (src, *companions(src), *needs):
            dst = stage / f.relative_to(out)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
    tok = (manifest.get("preprocessing") or {}).get("tokenizer")
    if tok:
        if not (out / tok).is_dir():
            raise UsageError(f"{out / MANIFEST} names the tokenizer folder {tok}, which is missing")
        shutil.copytree(out / tok, stage / tok)


def _evidence(stage: Path, manifest: dict, bench: str | None) -> dict:
    evidence = {"verification": {a["path"]: a.get("verification") for a in manifest["artifacts"]},
                "quality": {a["path"]: a["quality"] for a in manifest["artifacts"] if a.get("quality")}}
    if manifest.get("int8"):
        gate = manifest["int8"]
        evidence["int8_gate"] = {k: gate.get(k) for k in ("metric", "max_drop", "passed", "notes") if k in gate}
    if bench:
        from edgeopt.bench.records import compact, read_document

        doc = read_document(bench, "--bench")
        (stage / "evidence").mkdir(exist_ok=True)
        shutil.copyfile(bench, stage / "evidence" / "bench.json")
        evidence["bench"] = {"file": "evidence/bench.json", "summary": compact(doc)}
    return evidence


def _files(stage: Path) -> dict:
    return {p.relative_to(stage).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(stage.rglob("*"))
            if p.is_file() and p.relative_to(stage).as_posix() not in (MANIFEST, SIGNATURE)}


def _write_tar(stage: Path, target: Path) -> None:
    """manifest.json first (a device reads it before anything else), then model.sig, then the rest."""
    order = [stage / MANIFEST] + ([stage / SIGNATURE] if (stage / SIGNATURE).exists() else [])
    order += [p for p in sorted(stage.rglob("*")) if p.is_file() and p not in order]
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in order:
            info = tar.gettarinfo(str(p), arcname=p.relative_to(stage).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(p, "rb") as f:
                tar.addfile(info, f)
    fsync_file(target)


def package(*, out: str | os.PathLike, bundle: str | os.PathLike, sign_key: str | os.PathLike | None = None,
            version: str | None = None, artifacts: list[str] | None = None, golden: str | None = None,
            bench: str | None = None, expires: str | None = None, base: str | None = None,
            target: str | None = None, log: Callable[[str], None] = lambda msg: None) -> PackageResult:
    """Build ``bundle`` from the export folder ``out``; see the module docstring."""
    out, bundle = Path(out), Path(bundle)
    if target is not None and target not in TARGETS:
        raise UsageError(f"--target {target}: unknown; choose from {', '.join(TARGETS)}")
    if bundle.suffix != SUFFIX:
        raise UsageError(f"-o {bundle}: a bundle's name ends in {SUFFIX}")
    if bundle.is_dir():
        raise UsageError(f"-o {bundle} is a folder; give a file path ending in {SUFFIX}")
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder: pass what `edgeopt export` wrote (a folder with {MANIFEST})")
    if bundle.resolve().is_relative_to(out.resolve()):
        raise UsageError(f"-o {bundle} is inside {out}; write the bundle elsewhere")
    manifest = read_manifest_data(out)
    name = (manifest.get("model") or {}).get("name") or out.name
    if not safe_name(name):
        raise UsageError(f"model name {name!r} in {out / MANIFEST} cannot name a folder on the device")
    version = version or default_version()
    parse_version(version)
    expires_at = parse_expires(expires) if expires else None
    if sign_key is not None:
        from edgeopt.bundle.sign import load_private_key

        load_private_key(sign_key)  # a bad key fails before any work
    if base is not None and not Path(base).is_file():
        raise UsageError(f"--base {base}: no such bundle (give the full bundle of the installed version)")
    arts, skipped = _select(out, manifest, artifacts, target)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.stage-", dir=bundle.parent))
    tmp = bundle.with_name(f".{bundle.name}.tmp-{os.getpid()}")
    base_dir = stage.with_name(stage.name + "-base")
    try:
        base_info = _read_base(base, base_dir, name, version) if base is not None else None
        log(f"copying {len(arts)} artifact(s)")
        _copy_payload(out, stage, arts, manifest)
        manifest = {**manifest, "artifacts": arts, "version": version}
        (stage / MANIFEST).write_text(json.dumps(manifest))  # what golden.record loads through the runtime
        feeds = golden_io.make_inputs(stage, manifest, golden)
        manifest["health"] = golden_io.record(stage, manifest, feeds, log)
        manifest["evidence"] = _evidence(stage, manifest, bench)
        key = None
        if sign_key is not None:
            from edgeopt.bundle.sign import _public_pem, key_id, load_private_key

            key = key_id(_public_pem(load_private_key(sign_key)))
        manifest["bundle"] = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "expires": expires_at, "base": base_info and base_info[0], "signer": key,
                              "packaged_by": f"edgeopt {__version__}"}
        manifest["files"] = _files(stage)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if sign_key is not None:
            from edgeopt.bundle.sign import sign_folder

            log("signing")
            sign_folder(stage, sign_key)
        log(f"writing {bundle}")
        _write_tar(stage, tmp)
        delta_info = None
        if base_info is not None:
            from edgeopt.bundle import delta

            full_bytes = tmp.stat().st_size
            log("computing the delta against the base")
            steps, payload = delta.plan(stage, base_dir, manifest["files"], base_info[1]["files"])
            delta.write(tmp, stage, steps, payload)
            counts = {k: sum(1 for s in steps["files"].values() if s["from"] == k) for k in ("base", "patch", "bundle")}
            delta_info = {"base_version": base_info[0]["version"], "full_bytes": full_bytes,
                          "delta_bytes": tmp.stat().st_size, "ratio": round(tmp.stat().st_size / full_bytes, 4),
                          "files_from_base": counts["base"], "files_patched": counts["patch"],
                          "files_shipped": counts["bundle"]}
        os.replace(tmp, bundle)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(base_dir, ignore_errors=True)
        tmp.unlink(missing_ok=True)
    files = manifest["files"]
    return PackageResult(bundle, name, version, [a["path"] for a in arts], len(files),
                         sum(f["bytes"] for f in files.values()), sign_key is not None, key, expires_at, skipped,
                         manifest["health"], delta_info)


def _read_base(base, base_dir: Path, name: str, version: str) -> tuple[dict, dict]:
    """--base: a full bundle of the same model with an older version, unpacked (hashes checked) into
    ``base_dir``: (the record for manifest bundle.base, the base's manifest)."""
    from edgeopt.bundle import delta
    from edgeopt.runtime.errors import BundleError

    base = Path(base)
    if delta.read_head(base)[1]:
        raise UsageError(f"--base {base} is itself a delta bundle; give the full bundle of the base version")
    base_dir.mkdir()
    try:
        base_manifest, raw = delta.unpack_base(base, base_dir)
    except BundleError as e:
        raise UsageError(f"--base {base}: {e}") from None
    record = delta.base_record(raw, base_manifest)
    if record["name"] != name:
        raise UsageError(f"--base {base} is a bundle of {record['name']!r}, not {name!r}; give a bundle of this model")
    if parse_version(str(record["version"]), "--base version") >= parse_version(version):
        raise UsageError(f"--base {base} has version {record['version']}, not older than {version}; pass a newer "
                         "--version")
    return record, base_manifest

"""Shared fixtures and helpers for the bundle and runtime tests (imported by tests/test_bundle_*.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

MANIFEST, SIGNATURE = "manifest.json", "model.sig"


@pytest.fixture(scope="session")
def tiny_export(tiny, tmp_path_factory):
    """A tiny residual CNN exported to ONNX only (seconds), the model every bundle test ships."""
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    out = tmp_path_factory.mktemp("bundle-export") / "tiny-out"
    assert export_model(load_model(tiny["resnet_pt2"]), out, ExportOptions(targets=("onnx",))).passed
    return out


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    from edgeopt.bundle.sign import keygen

    folder = tmp_path_factory.mktemp("keys")
    return {"good": keygen(out=folder / "good"), "other": keygen(out=folder / "other")}


@pytest.fixture(scope="session")
def bundles(tiny_export, keys, tmp_path_factory):
    """Signed bundles of the tiny model at versions 1.0 and 2.0, and an unsigned 3.0."""
    from edgeopt.bundle.build import package

    folder = tmp_path_factory.mktemp("bundles")
    key = keys["good"].private_key
    return {"v1": package(out=tiny_export, bundle=folder / "v1.edgepkg", sign_key=key, version="1.0").bundle,
            "v2": package(out=tiny_export, bundle=folder / "v2.edgepkg", sign_key=key, version="2.0").bundle,
            "unsigned": package(out=tiny_export, bundle=folder / "v3.edgepkg", version="3.0").bundle}


def unpack(bundle: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    with tarfile.open(bundle) as tar:
        tar.extractall(folder, filter="data")
    return folder


def retar(folder: Path, bundle: Path, *, extra=None) -> Path:
    """Tar ``folder`` as a bundle (manifest first); ``extra(tar)`` may add hand-made members."""
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        files = [folder / MANIFEST] + [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST]
        for p in files:
            tar.add(p, arcname=p.relative_to(folder).as_posix())
        if extra:
            extra(tar)
    return bundle


def refresh_manifest(folder: Path) -> None:
    """Recompute the manifest's files table after editing files (what an attacker or a bad build does)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {p.relative_to(folder).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                                            "bytes": p.stat().st_size}
                         for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (MANIFEST, SIGNATURE)}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def resign(folder: Path, key: Path) -> None:
    from edgeopt.bundle.sign import sign_folder

    (folder / SIGNATURE).unlink(missing_ok=True)
    sign_folder(folder, key)


def tree_digest(path: Path) -> str:
    """Every file and link under ``path`` (names, link targets, contents): 'untouched' means equal."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def verified_current(model_dir: Path, public_key: Path) -> str:
    """The version ``current`` names, after checking that it is complete and verifies."""
    from edgeopt.runtime.manifest import check_files, read
    from edgeopt.runtime.signature import verify_folder

    version = os.readlink(model_dir / "current")
    folder = model_dir / version
    check_files(folder, read(folder), hashes=True)
    verify_folder(folder, public_key)
    return version


def copy_dest(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst

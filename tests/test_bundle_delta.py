"""Delta bundles (edgeopt package --base): a model updated by `edgeopt update` (same graph) ships as
a delta, installs onto its base with the full checks, and is refused without its base or tampered."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import keys, tree_digest  # noqa: F401
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def versions(keys, tmp_path_factory):  # noqa: F811
    """recsys 1.0 (a GRU recommender as a model.pt2 folder) and 1.1 (it, updated on new sessions),
    both exported to ONNX; the full 1.0 bundle and the 1.1 delta against it."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import SessionGRU

    from edgeopt.bundle import package
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model
    from edgeopt.models.pt2_folder import write_pt2_folder
    from edgeopt.spec import parse_input
    from edgeopt.update import update

    root = tmp_path_factory.mktemp("delta")
    torch.manual_seed(0)
    model = SessionGRU(n_items=300, dim=32).eval()
    spec = [parse_input("item_ids:batchx5:int64")]
    write_pt2_folder(root / "v1" / "recsys", model, (torch.zeros(2, 5, dtype=torch.long),), spec, task="classify")
    rng = np.random.default_rng(0)
    x = rng.integers(1, 60, (300, 5))  # sessions over a few popular items: most rows stay as they were
    np.savez(root / "new.npz", item_ids=x, labels=(x[:, -1] + 1) % 60)
    update(model=root / "v1" / "recsys", data=root / "new.npz", method="finetune", epochs=1,
           out=root / "v2" / "recsys", progress=False)
    for v in ("v1", "v2"):
        assert export_model(load_model(root / v / "recsys"), root / f"exp-{v}",
                            ExportOptions(targets=("onnx",))).passed
    key = keys["good"].private_key
    full1 = package(out=root / "exp-v1", bundle=root / "v1.edgepkg", sign_key=key, version="1.0")
    full2 = package(out=root / "exp-v2", bundle=root / "v2.edgepkg", sign_key=key, version="1.1")
    delta = package(out=root / "exp-v2", bundle=root / "v2-delta.edgepkg", sign_key=key, version="1.1",
                    base=full1.bundle)
    return {"root": root, "v1": full1.bundle, "v2": full2.bundle, "delta": delta}


def _install(bundle, dest, keys):  # noqa: F811
    return run_cli("install", bundle, "--dest", dest, "--public-key", keys["good"].public_key, "--json")


def test_delta_is_smaller_and_installs_onto_its_base(versions, keys, tmp_path):  # noqa: F811
    d = versions["delta"].delta
    assert d["base_version"] == "1.0" and d["files_patched"] >= 1
    assert d["delta_bytes"] == versions["delta"].bundle.stat().st_size
    assert d["delta_bytes"] <= 0.6 * d["full_bytes"], d  # only the changed rows of the tables travel
    dest = tmp_path / "dest"
    assert _install(versions["v1"], dest, keys).returncode == 0
    r = _install(versions["delta"].bundle, dest, keys)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1.1" and json.loads(r.stdout)["previous"] == "1.0"
    # the rebuilt folder holds byte for byte the files a full 1.1 bundle installs (its manifest differs:
    # another packaging time, and it names its base)
    other = tmp_path / "other"
    assert _install(versions["v2"], other, keys).returncode == 0
    got = json.loads((dest / "recsys" / "1.1" / "manifest.json").read_text())
    assert got["files"] == json.loads((other / "recsys" / "1.1" / "manifest.json").read_text())["files"]
    assert got["bundle"]["base"]["version"] == "1.0"
    v = run_cli("verify", dest / "recsys", "--public-key", keys["good"].public_key)
    assert v.returncode == 0, v.stderr
    assert run_cli("rollback", dest / "recsys").returncode == 0


def test_delta_without_its_base_is_refused(versions, keys, tmp_path):  # noqa: F811
    dest = tmp_path / "dest"
    r = _install(versions["delta"].bundle, dest, keys)
    assert r.returncode == 2
    assert "delta against recsys 1.0, which is not installed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (dest / "recsys").exists()


@pytest.mark.parametrize("what", ["patch", "plan"])
def test_tampered_delta_is_refused(versions, keys, tmp_path, what):  # noqa: F811
    dest = tmp_path / "dest"
    assert _install(versions["v1"], dest, keys).returncode == 0
    before = tree_digest(dest)
    bad = tmp_path / "bad.edgepkg"
    with tarfile.open(versions["delta"].bundle) as src, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as out:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if what == "patch" and m.name.endswith(".patch"):
                data = data[:-40] + bytes(b ^ 0xFF for b in data[-40:])
            if what == "plan" and m.name == "delta.json":
                plan = json.loads(data)
                rel = next(r for r, s in plan["files"].items() if s["from"] == "patch")
                plan["files"][rel] = {"from": "base", "path": rel}  # "unchanged": the old weights
                data = json.dumps(plan).encode()
            m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    r = _install(bad, dest, keys)
    assert r.returncode == 1, r.stderr  # a failed verification, as `edgeopt verify` exits for it
    assert "sha256" in r.stderr or "malformed" in r.stderr or "cannot rebuild" in r.stderr, r.stderr
    assert tree_digest(dest) == before


def test_base_must_be_an_older_bundle_of_the_same_model(versions, keys, tmp_path):  # noqa: F811
    root = versions["root"]
    r = run_cli("package", root / "exp-v1", "-o", tmp_path / "x.edgepkg", "--version", "0.9", "--base",
                versions["v1"])
    assert r.returncode == 2 and "not older than 0.9" in r.stderr
    r = run_cli("package", root / "exp-v2", "-o", tmp_path / "y.edgepkg", "--version", "2.0", "--base",
                versions["delta"].bundle)
    assert r.returncode == 2 and "itself a delta" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists() and not (tmp_path / "y.edgepkg").exists()


def test_patch_roundtrip_and_onnx_tensors():
    from edgeopt.bundle import patch

    rng = np.random.default_rng(0)
    a = rng.standard_normal(50_000).astype(np.float32)
    b = a.copy()
    b[:5000] += 1e-3
    old, new = b"x" + a.tobytes(), b"x" + b.tobytes()
    p = patch.make(old, new)
    assert patch.apply(old, p) == new and len(p) < 0.2 * len(new)
    with pytest.raises(ValueError):
        patch.apply(old, b"garbage")


def test_compact_delta_update_ships_fewer_bytes_and_keeps_the_low_bits(versions, keys, tmp_path):  # noqa: F811
    """update --compact-delta: every changed weight keeps 1.0's low 16 bits (moved by at most 2^-8 of
    itself), unchanged weights stay exact, and the delta against 1.0 is well below the plain update's."""
    import torch

    from edgeopt.bundle import package
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model
    from edgeopt.update import update

    root = versions["root"]
    r = update(model=root / "v1" / "recsys", data=root / "new.npz", method="finetune", epochs=1,
               out=tmp_path / "v3" / "recsys", progress=False, compact_delta=True)
    info = r.report.compact_delta
    assert info["weights_moved"] > 0 and info["max_relative_change"] <= 2 ** -8
    assert r.report.after.new  # measured after the weights were moved

    def weights(folder):
        return {k: v.detach().numpy() for k, v in torch.export.load(str(folder / "model.pt2")).state_dict.items()}

    old, new = weights(root / "v1" / "recsys"), weights(tmp_path / "v3" / "recsys")
    for k, a in old.items():
        if a.dtype == np.float32:
            b = new[k] if k in new else new["inner." + k]
            assert ((a.view(np.uint32) & 0xFFFF) == (b.view(np.uint32) & 0xFFFF)).all(), k
    assert export_model(load_model(tmp_path / "v3" / "recsys"), tmp_path / "exp-v3",
                        ExportOptions(targets=("onnx",))).passed
    compact = package(out=tmp_path / "exp-v3", bundle=tmp_path / "v3-delta.edgepkg",
                      sign_key=keys["good"].private_key, version="1.1", base=versions["v1"]).delta
    plain = versions["delta"].delta
    assert compact["delta_bytes"] <= 0.75 * plain["delta_bytes"], (compact, plain)
    dest = tmp_path / "dest"
    assert _install(versions["v1"], dest, keys).returncode == 0
    r = _install(tmp_path / "v3-delta.edgepkg", dest, keys)
    assert r.returncode == 0, r.stderr

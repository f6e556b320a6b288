"""python-tuf's attacks against the fleet agent over loopback HTTP: every one is refused in one line with
the installed version kept current, and the device converges once the repository is honest again.
Also key rotation, a server that dies mid-download, a device offline past the timestamp's expiry and a
device whose clock runs ahead."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import types

import pytest

from tests.bundle_fixtures import keys  # noqa: F401
from tests.fleet_fixtures import fleet_bundles, new_repo, serve, tiny_export  # noqa: F401

pytest.importorskip("tuf")


def _publish(bundle, repo, rollout=100.0):
    from edgeopt.fleet.publishing import publish

    return publish(bundle=bundle, repo=repo, keys=repo.parent / "repo-keys", rollout=rollout)


@pytest.fixture(scope="module")
def provisioned(fleet_bundles, keys, tmp_path_factory):  # noqa: F811
    """A device DEST with 1.0 installed (by `install`, health check included), copied for each test."""
    from edgeopt.bundle.installation import install

    dest = tmp_path_factory.mktemp("provisioned") / "dest"
    install(bundle=fleet_bundles["1.0"], dest=dest, public_key=keys["good"].public_key)
    return dest


@pytest.fixture
def fleet(fleet_bundles, keys, provisioned, tmp_path):  # noqa: F811
    """A repository with 1.0 published, a running server, and a device running 1.0 that has polled it once."""
    from edgeopt.fleet.agent import Agent, AgentConfig

    def make(**expiry):
        repo, keys_dir = new_repo(tmp_path, **expiry)
        _publish(fleet_bundles["1.0"], repo)
        server = stack.enter_context(serve(repo))
        shutil.copytree(provisioned, tmp_path / "dest", symlinks=True)
        agent = Agent(AgentConfig(server.url, repo / "metadata" / "root.json", keys["good"].public_key,
                                  tmp_path / "dest", "store-1"))
        [r] = agent.run(once=True)
        assert (r.status, r.current, r.error) == ("unchanged", "1.0", ""), r
        return types.SimpleNamespace(repo=repo, keys=keys_dir, server=server, agent=agent, meta=repo / "metadata")

    import contextlib

    with contextlib.ExitStack() as stack:
        yield make


def _refused(agent, *words):
    [r] = agent.run(once=True)
    assert r.status == "unchanged" and r.current == "1.0", r
    assert os.readlink(agent.cfg.dest / r.model / "current") == "1.0"  # on disk, not just in the report
    assert all(w in r.error for w in words) and "\n" not in r.error, r.error
    return r


def _converges(agent, version="2.0"):
    [r] = agent.run(once=True)
    assert r.status == "installed" and r.current == version, r


def test_metadata_rollback_refused(fleet, fleet_bundles):  # noqa: F811
    f = fleet()
    old_timestamp = (f.meta / "timestamp.json").read_bytes()
    _publish(fleet_bundles["2.0"], f.repo, rollout=0)  # the device sees a newer timestamp, stays on 1.0
    assert f.agent.run(once=True)[0].error == ""
    newer = (f.meta / "timestamp.json").read_bytes()
    (f.meta / "timestamp.json").write_bytes(old_timestamp)  # replay an older, validly signed release
    _refused(f.agent, "BadVersionNumberError")
    (f.meta / "timestamp.json").write_bytes(newer)
    assert f.agent.run(once=True)[0].error == ""


def test_mix_and_match_refused(fleet, fleet_bundles):  # noqa: F811
    f = fleet()
    _publish(fleet_bundles["2.0"], f.repo)
    versions = sorted(int(p.name.split(".")[0]) for p in f.meta.glob("*.targets.json"))
    new, old = f.meta / f"{versions[-1]}.targets.json", f.meta / f"{versions[-2]}.targets.json"
    good = new.read_bytes()
    new.write_bytes(old.read_bytes())  # this release's snapshot with the previous release's targets
    _refused(f.agent, "BadVersionNumberError")
    new.write_bytes(good)
    _converges(f.agent)


@pytest.mark.parametrize("change", ["tamper", "oversize"])
def test_tampered_or_oversized_target_refused(fleet, fleet_bundles, change):  # noqa: F811
    f = fleet()
    _publish(fleet_bundles["2.0"], f.repo)
    [target] = [p for p in (f.repo / "targets").rglob("*-2.0.edgepkg")]
    good = target.read_bytes()
    target.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:] if change == "tamper" else good + b"\0" * 4096)
    _refused(f.agent, "LengthOrHash" if change == "tamper" else "Length")
    assert not list((f.agent.state / "downloads").glob("*"))  # nothing unverified left on the device
    target.write_bytes(good)
    _converges(f.agent)


def test_freeze_by_expired_timestamp_then_refresh(fleet, fleet_bundles):  # noqa: F811
    """An attacker (or a stuck mirror) keeps serving the last timestamp: once it expires the device
    refuses it; `repo refresh` (the cron job) signs a fresh one and the device converges. The same
    path covers a device offline past the timestamp's expiry."""
    from tests.conftest import run_cli

    f = fleet(timestamp="5s")
    _publish(fleet_bundles["2.0"], f.repo, rollout=0)
    f.server.faults["down"] = True  # offline
    _refused(f.agent, "repository:")
    time.sleep(5.2)
    f.server.faults["down"] = False  # back, but serving the expired timestamp
    _refused(f.agent, "ExpiredMetadataError")
    r = run_cli("repo", "refresh", "--repo", f.repo, "--keys", f.keys, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["signed"] == ["timestamp"], r.stderr
    assert f.agent.run(once=True)[0].error == ""


def test_clock_skew(fleet, fleet_bundles, monkeypatch):  # noqa: F811
    """A device clock two days ahead sees the one-day timestamp as expired (refused, 1.0 kept); an hour
    ahead is within the expiry and updates."""
    from tuf.ngclient._internal import trusted_metadata_set

    f = fleet()
    _publish(fleet_bundles["2.0"], f.repo)

    def skewed(delta):
        class Clock(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return dt.datetime.now(tz) + delta
        monkeypatch.setattr(trusted_metadata_set, "datetime", types.SimpleNamespace(datetime=Clock,
                                                                                   timezone=dt.timezone))

    skewed(dt.timedelta(days=2))
    _refused(f.agent, "ExpiredMetadataError")
    skewed(dt.timedelta(hours=1))
    _converges(f.agent)


def test_wrong_key_root_refused(fleet, fleet_bundles, keys, tmp_path):  # noqa: F811
    from edgeopt.fleet.agent import Agent, AgentConfig
    from edgeopt.fleet.keys import KeyStore

    f = fleet()
    # a device provisioned with another repository's root trusts none of this one's keys
    other, _ = new_repo(tmp_path / "other")
    stranger = Agent(AgentConfig(f.server.url, other / "metadata" / "root.json", keys["good"].public_key,
                                 tmp_path / "stranger", "store-2"))
    [r] = stranger.run(once=True)
    assert r.status == "unchanged" and "UnsignedMetadataError" in r.error and r.current is None, r
    # an attacker's root v2, signed by a key that the trusted root does not list
    from tuf.api.metadata import Metadata

    root = Metadata.from_file(str(f.meta / "root.json"))
    root.signed.version += 1
    root.sign(KeyStore(tmp_path / "other" / "repo-keys").signer("root"))
    (f.meta / f"{root.signed.version}.root.json").write_bytes(root.to_bytes())
    _publish(fleet_bundles["2.0"], f.repo)
    _refused(f.agent, "UnsignedMetadataError")


@pytest.mark.parametrize("role", ["root", "targets", pytest.param("snapshot", marks=pytest.mark.slow),
                                  pytest.param("timestamp", marks=pytest.mark.slow)])
def test_key_rotation(fleet, fleet_bundles, role):  # noqa: F811
    """After a rotation the device follows the new root and installs what the new key signs; for the
    targets key, metadata signed by the retired key is refused."""
    from tests.conftest import run_cli

    f = fleet()
    r = run_cli("repo", "rotate-key", role, "--repo", f.repo, "--keys", f.keys, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["root_version"] == 2 and doc["rotated"][0] != doc["rotated"][1]
    _publish(fleet_bundles["2.0"], f.repo)
    if role == "targets":
        from tuf.api.metadata import Metadata

        [retired] = (f.keys / "retired").glob("targets-*.pem")
        newest = max(f.meta.glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
        good = newest.read_bytes()
        md = Metadata.from_bytes(good)
        md.signatures.clear()
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner

        md.sign(CryptoSigner(load_pem_private_key(retired.read_bytes(), None)))
        newest.write_bytes(md.to_bytes())
        _refused(f.agent, "UnsignedMetadataError")
        newest.write_bytes(good)
    _converges(f.agent)
    assert (f.agent.state / "metadata" / "root.json").exists()
    assert json.loads((f.agent.state / "metadata" / "root.json").read_bytes())["signed"]["version"] == 2


def test_server_killed_mid_download(fleet, fleet_bundles):  # noqa: F811
    f = fleet()
    _publish(fleet_bundles["2.0"], f.repo)
    f.server.faults["cut"] = 4096  # headers promise the whole bundle, 4 KiB arrive, the connection drops
    r = _refused(f.agent)
    assert "Connection broken" in r.error or "DownloadError" in r.error, r.error
    assert not list((f.agent.state / "downloads").glob("*"))
    del f.server.faults["cut"]
    _converges(f.agent)

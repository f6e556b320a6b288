"""The fleet over real HTTP: each device an `edgeopt agent` process with its own DEST against a repository
served on 127.0.0.1. A staged rollout 5 % -> 50 % -> 100 % converges within one poll after each
promotion; a bundle whose health check fails on the first cohort halts the rollout with every other
device untouched; an agent left running rides out a server outage and converges when it returns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.bundle_fixtures import keys  # noqa: F401
from tests.conftest import run_cli
from tests.fleet_fixtures import fleet_bundles, model_name, new_repo, serve, tiny_export  # noqa: F401

pytest.importorskip("tuf")
EDGEOPT = str(Path(sys.executable).parent / "edgeopt")


def _devices(n: int) -> list[str]:
    """``n`` device ids with at least one in the 5 % cohort and one in the 5-50 % band."""
    from edgeopt.fleet.release import cohort

    ids = [f"store-{i:04d}" for i in range(2000)]
    first = next(d for d in ids if cohort(d) < 5)
    middle = next(d for d in ids if 5 <= cohort(d) < 50)
    rest = [d for d in ids if d not in (first, middle)][: n - 2]
    return [first, middle, *rest]


def _agent_args(server, repo, keys, dest, device, reports):  # noqa: F811
    return [EDGEOPT, "agent", "--repo", server.url, "--root", str(repo / "metadata" / "root.json"), "--public-key",
            str(keys["good"].public_key), "--dest", str(dest), "--device-id", device, "--report-url", str(reports)]


def _poll_all(server, repo, keys, root, devices, reports):  # noqa: F811
    """One polling interval: every device polls once (real processes, a few at a time)."""
    def one(device):
        r = subprocess.run([*_agent_args(server, repo, keys, root / device, device, reports), "--once", "--json"],
                           capture_output=True, text=True, timeout=300)
        assert "Traceback" not in r.stderr, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(devices, pool.map(one, devices), strict=True))


def _current(root, devices, name):
    return {d: os.readlink(root / d / name / "current") for d in devices}


def _promote(repo, keys_dir, reports, version, to, max_failures=0):
    return run_cli("fleet", "promote", version, "--to", to, "--repo", repo, "--keys", keys_dir, "--reports", reports,
                   "--max-failures", max_failures)


def _rollout(fleet_bundles, keys, tmp_path, n):  # noqa: F811
    from edgeopt.fleet.release import cohort

    repo, keys_dir = new_repo(tmp_path)
    name, root, reports = model_name(fleet_bundles["1.0"]), tmp_path / "devices", tmp_path / "reports"
    devices = _devices(n)
    assert run_cli("publish", fleet_bundles["1.0"], "--repo", repo, "--keys", keys_dir).returncode == 0
    with serve(repo) as server:
        _poll_all(server, repo, keys, root, devices, reports)
        assert set(_current(root, devices, name).values()) == {"1.0"}
        for b in ("2.0", "2.0-delta"):
            r = run_cli("publish", fleet_bundles[b], "--repo", repo, "--keys", keys_dir, "--rollout", "5")
            assert r.returncode == 0, r.stderr
        for pct in (5, 50, 100):
            if pct != 5:
                r = _promote(repo, keys_dir, reports, "2.0", pct)
                assert r.returncode == 0, r.stderr
            got = _poll_all(server, repo, keys, root, devices, reports)
            want = {d: "2.0" if cohort(d) < pct else "1.0" for d in devices}
            assert _current(root, devices, name) == want, (pct, got)
        # every update travelled as the delta, never the full 2.0 bundle
        assert not any(p.endswith(f"{name}-2.0.edgepkg") for p in server.served)
        # a bundle whose health check fails: the first cohort tries it and fails, the rollout halts
        r = run_cli("publish", fleet_bundles["3.0-sick"], "--repo", repo, "--keys", keys_dir, "--rollout", "5")
        assert r.returncode == 0, r.stderr
        got = _poll_all(server, repo, keys, root, devices, reports)
        first = [d for d in devices if cohort(d) < 5]
        assert all(got[d][0]["status"] == "failed" and got[d][0]["health"] == "failed" for d in first), got
        halt = _promote(repo, keys_dir, reports, "3.0", 50, max_failures=10)
        assert halt.returncode == 1 and "halted" in halt.stderr, halt.stderr
        _poll_all(server, repo, keys, root, devices, reports)
        assert set(_current(root, devices, name).values()) == {"2.0"}
    s = run_cli("fleet", "status", "--reports", reports, "--json")
    assert s.returncode == 0, s.stderr
    counts = json.loads(s.stdout)[name]
    assert counts["2.0"] == {"running": n, "failed": 0, "waiting": 0}
    assert counts["3.0"] == {"running": 0, "failed": len(first), "waiting": n - len(first)}


def test_rollout_5_devices(fleet_bundles, keys, tmp_path):  # noqa: F811
    _rollout(fleet_bundles, keys, tmp_path, 5)


@pytest.mark.slow
def test_rollout_20_devices(fleet_bundles, keys, tmp_path):  # noqa: F811
    _rollout(fleet_bundles, keys, tmp_path, 20)


def test_running_agent_rides_out_an_outage(fleet_bundles, keys, tmp_path):  # noqa: F811
    repo, keys_dir = new_repo(tmp_path)
    name, dest, reports = model_name(fleet_bundles["1.0"]), tmp_path / "dest", tmp_path / "reports"
    assert run_cli("publish", fleet_bundles["1.0"], "--repo", repo, "--keys", keys_dir).returncode == 0
    with serve(repo) as server:
        server.faults["down"] = True
        proc = subprocess.Popen([*_agent_args(server, repo, keys, dest, "store-1", reports), "--interval", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while len(list(reports.glob("*.json")) if reports.is_dir() else []) < 2:  # two failed polls
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            assert not (dest / name).exists()
            server.faults["down"] = False
            while not (dest / name / "current").is_symlink():
                assert proc.poll() is None and time.monotonic() < deadline, "did not converge"
                time.sleep(0.2)
            assert os.readlink(dest / name / "current") == "1.0"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
    assert "repository:" in out and "Traceback" not in err, (out, err)


@pytest.mark.slow
def test_session_recommender_update_moves_the_delta(tmp_path):
    """benchmarks/fleet_wire_yoochoose.py on real YOOCHOOSE clicks (a few hundred sessions): the device's
    update to 1.1 moves the delta and the TUF metadata, well under the full bundle."""
    from tests.conftest import ROOT, SHARED_DATA

    if not (SHARED_DATA / "yoochoose").is_dir():
        pytest.skip(f"shared data missing: {SHARED_DATA / 'yoochoose'} (see ../shared/data/SOURCES.md)")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fleet_wire_yoochoose.py"), "--limit", "400",
                        "--epochs", "1", "--update-epochs", "1", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "r.json").read_text())
    update = res["polls"]["update to 1.1"]
    assert update["report_kind"] == "delta" and update["current"] == "1.1"
    assert update["bundles"] == res["delta_bundle_bytes"] < 0.8 * res["full_bundle_bytes"], res

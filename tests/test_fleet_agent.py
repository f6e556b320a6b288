"""Fleet distribution, in process: publish to a TUF repository served on 127.0.0.1, agents (python-tuf's
client) install releases, take the delta when they hold its base, follow cohorts, roll back from a
halted version; every bad input leaves the installed version current in one line."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle_fixtures import keys  # noqa: F401
from tests.conftest import run_cli
from tests.fleet_fixtures import fleet_bundles, model_name, new_repo, serve, tiny_export  # noqa: F401

pytest.importorskip("tuf")


def _agent(server, repo, keys, dest, device="store-1", **kw):  # noqa: F811
    from edgeopt.fleet.agent import Agent, AgentConfig

    return Agent(AgentConfig(server.url, repo / "metadata" / "root.json", keys["good"].public_key, dest, device,
                             **kw))


def _device_in(cohort_below: float, start: int = 0) -> str:
    from edgeopt.fleet.release import cohort

    return next(f"store-{i}" for i in range(start, 10_000) if cohort(f"store-{i}") < cohort_below)


def _device_out(cohort_above: float) -> str:
    from edgeopt.fleet.release import cohort

    return next(f"store-{i}" for i in range(10_000) if cohort(f"store-{i}") >= cohort_above)


def _publish(bundle, repo, rollout=100.0, channel="stable"):
    from edgeopt.fleet.publishing import publish

    return publish(bundle=bundle, repo=repo, keys=repo.parent / "repo-keys", rollout=rollout, channel=channel)


def test_install_then_delta_then_status(fleet_bundles, keys, tmp_path):  # noqa: F811
    repo, _ = new_repo(tmp_path)
    name = model_name(fleet_bundles["1.0"])
    _publish(fleet_bundles["1.0"], repo)
    reports_dir = tmp_path / "reports"
    with serve(repo) as server:
        agent = _agent(server, repo, keys, tmp_path / "dest", report_url=str(reports_dir))
        [r] = agent.run(once=True)
        assert (r.status, r.current, r.kind, r.model) == ("installed", "1.0", "full", name), r
        full2 = _publish(fleet_bundles["2.0"], repo)
        d = _publish(fleet_bundles["2.0-delta"], repo)
        assert d.release.kind == "delta" and d.release.base == "1.0" and d.length < full2.length
        server.served.clear()
        [r] = agent.run(once=True)
        assert (r.status, r.current, r.kind, r.bytes) == ("installed", "2.0", "delta", d.length), r
        assert not any(p.endswith(f"{name}-2.0.edgepkg") for p in server.served)  # the full bundle never travelled
        [r] = agent.run(once=True)
        assert (r.status, r.current, r.error) == ("unchanged", "2.0", "")
    assert (tmp_path / "dest" / name / "previous").readlink().name == "1.0"
    s = run_cli("fleet", "status", "--reports", reports_dir, "--json")
    assert s.returncode == 0, s.stderr
    assert json.loads(s.stdout)[name] == {"2.0": {"running": 1, "failed": 0, "waiting": 0},
                                           "1.0": {"running": 0, "failed": 0, "waiting": 1}}


def test_cohort_channel_and_halt_rolls_back(fleet_bundles, keys, tmp_path):  # noqa: F811
    from edgeopt.fleet.publishing import promote

    repo, keys_dir = new_repo(tmp_path)
    _publish(fleet_bundles["1.0"], repo)
    _publish(fleet_bundles["other"], repo, channel="beta")  # another channel: never installed here
    inside, outside = _device_in(10), _device_out(10)
    reports_dir = tmp_path / "reports"
    with serve(repo) as server:
        a_in = _agent(server, repo, keys, tmp_path / "in", inside, report_url=str(reports_dir))
        a_out = _agent(server, repo, keys, tmp_path / "out", outside, report_url=str(reports_dir))
        assert [r.current for r in a_in.run(once=True)] == ["1.0"]
        _publish(fleet_bundles["2.0"], repo, rollout=10)
        assert [r.current for r in a_in.run(once=True)] == ["2.0"]
        assert [r.current for r in a_out.run(once=True)] == ["1.0"]
        # the one device that tried 2.0 reports it fine, so promoting with no failures goes through
        r = promote(repo=repo, keys=keys_dir, reports=reports_dir, version="2.0", to=100, max_failures=0)
        assert (r.rollout_before, r.rollout, r.tried, r.failed) == (10, 100, 1, 0)
        assert [r.current for r in a_out.run(once=True)] == ["2.0"]
        # a halted (withdrawn) version sends its devices back to the previous one
        h = run_cli("fleet", "halt", "2.0", "--repo", repo, "--keys", keys_dir, "--reason", "returns stale items")
        assert h.returncode == 0 and "halted" in h.stdout, h.stderr
        [r] = a_in.run(once=True)
        assert (r.status, r.kind, r.current) == ("installed", "rollback", "1.0"), r
        assert "returns stale items" in r.error
        [r] = a_out.run(once=True)
        assert (r.status, r.kind, r.current) == ("installed", "rollback", "1.0"), r
        assert not (tmp_path / "in" / "other-model").exists()


def test_failed_health_reported_not_retried_and_promote_halts(fleet_bundles, keys, tmp_path):  # noqa: F811
    repo, keys_dir = new_repo(tmp_path)
    _publish(fleet_bundles["1.0"], repo)
    reports_dir = tmp_path / "reports"
    with serve(repo) as server:
        agent = _agent(server, repo, keys, tmp_path / "dest", _device_in(50), report_url=str(reports_dir))
        assert [r.current for r in agent.run(once=True)] == ["1.0"]
        _publish(fleet_bundles["3.0-sick"], repo, rollout=50)
        [r] = agent.run(once=True)
        assert (r.status, r.version, r.current, r.health) == ("failed", "3.0", "1.0", "failed"), r
        assert "health check failed" in r.error
        server.served.clear()
        [r] = agent.run(once=True)  # the same bytes are not fetched and tried again
        assert r.status == "unchanged" and "failed on this device before" in r.error
        assert not any(p.endswith(".edgepkg") for p in server.served)
    p = run_cli("fleet", "promote", "3.0", "--to", "100", "--repo", repo, "--keys", keys_dir, "--reports",
                reports_dir, "--max-failures", "20")
    assert p.returncode == 1 and "halted" in p.stderr and "1 of 1 devices" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    again = run_cli("fleet", "promote", "3.0", "--to", "100", "--repo", repo, "--keys", keys_dir, "--reports",
                    reports_dir)
    assert again.returncode == 2 and "was halted" in again.stderr


def test_reports_posted_to_the_collector(fleet_bundles, keys, tmp_path):  # noqa: F811
    """Agents POST to `fleet collect`'s server (here in a thread, on 127.0.0.1), which writes the folder
    that `fleet status` reads; a body that is not a report is refused with 400."""
    import threading
    import urllib.error
    import urllib.request

    from edgeopt.fleet.collector import collector

    repo, _ = new_repo(tmp_path)
    _publish(fleet_bundles["1.0"], repo)
    server = collector(reports=tmp_path / "reports", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with serve(repo) as repo_server:
            _agent(repo_server, repo, keys, tmp_path / "dest", report_url=url).run(once=True)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url, data=b"[1, 2]"), timeout=10)
        assert e.value.code == 400
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    name = model_name(fleet_bundles["1.0"])
    s = run_cli("fleet", "status", "--reports", tmp_path / "reports", "--json")
    assert json.loads(s.stdout) == {name: {"1.0": {"running": 1, "failed": 0, "waiting": 0}}}, s.stderr


# bad input: one line, the installed version stays current, the agent keeps running ----------------------

def _installed(fleet_bundles, keys, tmp_path):  # noqa: F811
    """A repository with 1.0 installed on one device, 2.0 published: the attacks below target 2.0."""
    repo, keys_dir = new_repo(tmp_path)
    _publish(fleet_bundles["1.0"], repo)
    return repo, keys_dir


def test_unreachable_repository_keeps_installed_and_backs_off(fleet_bundles, keys, tmp_path):  # noqa: F811
    import threading

    repo, _ = _installed(fleet_bundles, keys, tmp_path)
    with serve(repo) as server:
        agent = _agent(server, repo, keys, tmp_path / "dest", interval=600)
        agent.run(once=True)
        url = server.url
    _publish(fleet_bundles["2.0"], repo)
    seen = []
    stop = threading.Event()

    def on_report(r):
        seen.append(r)
        if len(seen) == 2:
            stop.set()

    agent.cfg.repo_url = url  # the server is gone: connection refused
    agent.run(stop=stop, max_polls=3, on_report=on_report)  # backs off 2 s, not the 600 s interval
    assert len(seen) == 2 and all(r.status == "unchanged" and r.current == "1.0" for r in seen)
    assert "repository:" in seen[0].error and "\n" not in seen[0].error


def _small_files():
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))


def _cli_agent(server, repo, keys, dest, device="store-1"):  # noqa: F811
    return [str(Path(sys.executable).parent / "edgeopt"), "agent", "--repo", server.url, "--root",
            str(repo / "metadata" / "root.json"), "--public-key", str(keys["good"].public_key), "--dest", str(dest),
            "--device-id", device]


def test_agent_bad_inputs(fleet_bundles, keys, tmp_path):  # noqa: F811
    from edgeopt.fleet import repository
    from edgeopt.fleet.release import Release, target_path

    repo, keys_dir = _installed(fleet_bundles, keys, tmp_path)
    dest = tmp_path / "dest"
    with serve(repo) as server:
        agent = _agent(server, repo, keys, dest)
        agent.run(once=True)
        name = model_name(fleet_bundles["1.0"])
        # a second agent on the same DEST skips its poll instead of racing the first
        import fcntl
        import os

        fd = os.open(dest / ".edgeopt-agent" / "agent.lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        [r] = _agent(server, repo, keys, dest).run(once=True)
        os.close(fd)
        assert r.status == "unchanged" and "another agent" in r.error and r.current == "1.0", r
        # a target that claims to be this model but holds another model's bundle
        with repository.locked(keys_dir):
            state = repository.load(repo, keys_dir)
            repository.add_target(state, fleet_bundles["other"], target_path(name, "5.0", f"{name}-5.0.edgepkg"),
                                  Release(name, "5.0"))
        [r] = agent.run(once=True)
        assert r.status == "failed" and "other-model" in r.error and r.current == "1.0", r
        assert (dest / name / "current").readlink().name == "1.0" and not (dest / "other-model").exists()
        # corrupt metadata: the newest timestamp.json is garbage
        _publish(fleet_bundles["2.0"], repo)
        ts = repo / "metadata" / "timestamp.json"
        good = ts.read_bytes()
        ts.write_bytes(b"{not json")
        [r] = agent.run(once=True)
        assert r.status == "unchanged" and r.current == "1.0" and "repository:" in r.error, r
        assert (dest / name / "current").readlink().name == "1.0"
        ts.write_bytes(good)
        # a full disk: the agent process may write no file past 16 KiB (RLIMIT_FSIZE: EFBIG, what a
        # full disk is to install), first while downloading, then, the bundle already fetched, installing
        target = next((repo / "targets" / name / "2.0").glob(f"*.{name}-2.0.edgepkg"))
        for cached in (False, True):
            if cached:  # the agent's download cache: <sha256>.edgepkg, reused when its hash matches
                shutil.copy(target, dest / ".edgeopt-agent" / "downloads" / f"{target.name.split('.')[0]}.edgepkg")
            r = subprocess.run([*_cli_agent(server, repo, keys, dest), "--once", "--json"], capture_output=True,
                               text=True, timeout=300, preexec_fn=_small_files)
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            report = json.loads(r.stdout.splitlines()[-1])
            assert report["status"] == "unchanged" and report["current"] == "1.0", report
            want = "no space left on the device while unpacking" if cached else "File too large"
            assert want in report["error"] and report["kind"] == "full", report
            assert (dest / name / "current").readlink().name == "1.0"
        [r] = agent.run(once=True)  # the disk has room again: it converges
        assert r.current == "2.0", r
    assert (dest / name / "current").readlink().name == "2.0"


def test_cli_bad_inputs_one_line(fleet_bundles, keys, tmp_path):  # noqa: F811
    repo, keys_dir = new_repo(tmp_path)
    (keys_dir / "targets.pem").unlink()
    r = run_cli("publish", fleet_bundles["1.0"], "--repo", repo, "--keys", keys_dir)
    assert r.returncode == 2 and "no targets key" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list((repo / "targets").rglob("*")) and len(list((repo / "metadata").glob("*.targets.json"))) == 1
    r = run_cli("agent", "--repo", "http://127.0.0.1:9", "--root", repo / "metadata" / "root.json", "--public-key",
                keys["good"].public_key, "--dest", tmp_path / "d", "--device-id", "x", "--once")
    assert r.returncode == 1 and "repository:" in r.stdout and "nothing installed" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("agent", "--repo", "not-a-url", "--root", repo / "metadata" / "root.json", "--public-key",
                keys["good"].public_key, "--dest", tmp_path / "d", "--device-id", "x", "--once")
    assert r.returncode == 2 and "is not a URL" in r.stderr
    r = run_cli("publish", fleet_bundles["1.0"], "--repo", tmp_path / "nothing", "--keys", keys_dir)
    assert r.returncode == 2 and "repo init" in r.stderr
    # --public-key: a bundle every device would refuse (another signer) is not published
    repo2, keys2 = new_repo(tmp_path / "b")
    r = run_cli("publish", fleet_bundles["1.0"], "--repo", repo2, "--keys", keys2, "--public-key",
                keys["other"].public_key)
    assert r.returncode == 1 and "verification failed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list((repo2 / "targets").rglob("*.edgepkg"))
    r = run_cli("publish", fleet_bundles["1.0"], "--repo", repo2, "--keys", keys2, "--public-key",
                keys["good"].public_key, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == "1.0", r.stderr

"""Release metadata, cohorts, report counting and the schedule of repo refresh (no network)."""

from __future__ import annotations

import pytest

from edgeopt.errors import UsageError
from edgeopt.fleet.release import Release, cohort
from edgeopt.fleet.reports import FAILED, INSTALLED, UNCHANGED, Report, read_reports, version_counts, write


def test_cohorts_are_stable_uniform_and_nested():
    ids = [f"store-{i}" for i in range(20_000)]
    c = [cohort(d) for d in ids]
    assert c == [cohort(d) for d in ids] and all(0 <= x < 100 for x in c)
    for pct in (5, 15, 50, 80):  # within 6 standard deviations of a uniform draw
        share = sum(x < pct for x in c) / len(c)
        assert abs(share - pct / 100) < 6 * (pct / 100 * (1 - pct / 100) / len(c)) ** 0.5, (pct, share)
    canary = Release("m", "2.0", rollout=5)
    wider = Release("m", "2.0", rollout=50)
    assert all(wider.covers(d) for d in ids if canary.covers(d))  # the first 5 % stay in every later stage
    assert not any(Release("m", "2.0", rollout=100, state="halted").covers(d) for d in ids[:100])


def test_custom_metadata_round_trip_and_refusals():
    r = Release("recsys", "1.1", "beta", 12.5, "delta", "1.0")
    custom = r.to_custom()
    assert custom["edgeopt"]["rollout"] == 1250  # canonical JSON: no floats
    assert Release.from_custom(custom) == r
    assert Release.from_custom({"other": 1}) is None
    assert Release.from_custom({"edgeopt": {**custom["edgeopt"], "model": "../etc"}}) is None
    with pytest.raises(UsageError, match="not a percentage"):
        Release("m", "1.0", rollout=101)
    with pytest.raises(UsageError):
        Release("m", "1.0", kind="delta")  # a delta names its base


def test_version_counts(tmp_path):
    reports = [Report("a", "m", "1.0", INSTALLED, current="1.0"), Report("b", "m", "1.0", INSTALLED, current="1.0"),
               Report("c", "m", "1.0", INSTALLED, current="1.0"),
               Report("a", "m", "2.0", INSTALLED, current="2.0"), Report("b", "m", "2.0", FAILED, "health", "1.0"),
               Report("c", "m", "1.0", UNCHANGED, "repository: down", "1.0")]
    for r in reports:
        write(r, tmp_path)
    counts = version_counts(read_reports(tmp_path))["m"]
    assert (counts["2.0"].running, counts["2.0"].failed, counts["2.0"].waiting, counts["2.0"].tried) == (1, 1, 1, 2)
    assert (counts["1.0"].running, counts["1.0"].failed, counts["1.0"].waiting) == (2, 0, 1)


def test_refresh_renews_what_would_lapse(tmp_path):
    """A cron `repo refresh` at the timestamp's pace re-signs snapshot and targets before they expire."""
    pytest.importorskip("tuf")
    from edgeopt.fleet.repository import refresh_repo
    from tests.fleet_fixtures import new_repo

    repo, keys_dir = new_repo(tmp_path, timestamp="1h", snapshot="90m", targets="30d")
    r = refresh_repo(repo=repo, keys=keys_dir)
    assert r.signed == ["snapshot", "timestamp"]  # snapshot would expire within two timestamp periods
    (keys_dir / "targets.pem").unlink()  # not needed while targets is far from expiry
    assert refresh_repo(repo=repo, keys=keys_dir).signed == ["snapshot", "timestamp"]
    repo2, keys2 = new_repo(tmp_path / "b", timestamp="1d", snapshot="30d", targets="1d")
    assert refresh_repo(repo=repo2, keys=keys2).signed == ["targets", "snapshot", "timestamp"]


def test_keys_inside_the_served_folder_refused(tmp_path):
    pytest.importorskip("tuf")
    from tests.conftest import run_cli

    r = run_cli("repo", "init", "--repo", tmp_path / "repo", "--keys", tmp_path / "repo" / "keys")
    assert r.returncode == 2 and "inside --repo" in r.stderr and not (tmp_path / "repo").exists()


def test_malformed_reports_are_skipped(tmp_path):
    write(Report("a/b", "m", "1.0", INSTALLED, current="1.0"), tmp_path)  # a slash in the id names no folder
    (tmp_path / "list.json").write_text('[1, 2]')
    (tmp_path / "types.json").write_text('{"device_id": "x", "model": ["m"], "status": "installed"}')
    (tmp_path / "status.json").write_text('{"device_id": "x", "model": "m", "status": "exploded"}')
    [r] = read_reports(tmp_path)
    assert r.device_id == "a/b" and version_counts([r])["m"]["1.0"].running == 1

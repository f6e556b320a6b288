"""What an agent reports after each attempt, where it goes, and the per-version counts read back.

One JSON object per attempt and model (DESIGN.md "Fleet"): ``device_id``, ``model``, ``version``
(the version it tried, or the one it kept), ``status`` (installed | failed | unchanged), ``error``,
``current`` (what runs after the attempt), ``health`` (passed | failed | null), ``kind`` (full |
delta | rollback | null), ``bytes`` downloaded and ``time``. ``status`` is ``failed`` only when the
bundle itself failed (verification, wrong model, health check); a repository that cannot be reached
or trusted leaves ``unchanged`` with an ``error``, so an outage never counts against a rollout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeopt.errors import UsageError

INSTALLED, FAILED, UNCHANGED = "installed", "failed", "unchanged"


@dataclass
class Report:
    device_id: str
    model: str
    version: str | None
    status: str
    error: str = ""
    current: str | None = None
    health: str | None = None
    kind: str | None = None
    bytes: int = 0
    time: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Report:
        """A report from its JSON object; ValueError for anything else (a collector takes input from
        the network, and one bad file must not stop `fleet status`)."""
        if not isinstance(data, dict):
            raise ValueError("a report is a JSON object")
        r = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        strings = (r.device_id, r.model, r.status, r.error, r.time)
        optional = (r.version, r.current, r.health, r.kind)
        if (not all(isinstance(x, str) for x in strings) or not all(x is None or isinstance(x, str) for x in optional)
                or not isinstance(r.bytes, int) or not r.device_id or r.status not in (INSTALLED, FAILED, UNCHANGED)):
            raise ValueError("a report needs device_id, model, status (installed | failed | unchanged) and "
                             "string fields")
        return r


def send(report: Report, url: str, *, timeout: float = 5.0) -> str | None:
    """POST the report to an http(s) URL, or write it into a folder; returns an error line or None
    (a collector that is down must not stop the agent)."""
    data = json.dumps(report.to_json()).encode()
    try:
        if url.startswith(("http://", "https://")):
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
        else:
            write(report, Path(url.removeprefix("file://")))
    except (OSError, ValueError) as e:
        return f"report to {url} failed: {e}"
    return None


def write(report: Report, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    label = re.sub(r"[^A-Za-z0-9._-]", "_", f"{report.device_id}-{report.model or 'none'}")[:100]
    path = folder / f"{time.time_ns()}-{os.getpid()}-{label}.json"
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(json.dumps(report.to_json()))
    os.rename(tmp, path)
    return path


def read_reports(folder: str | os.PathLike) -> list[Report]:
    """Every report in ``folder``, oldest first (files another process is writing are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"no such reports folder: {folder}")
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(Report.from_json(json.loads(path.read_text())))
        except (ValueError, TypeError, OSError):
            continue
    return sorted(out, key=lambda r: r.time)


@dataclass
class VersionCounts:
    running: int = 0  # devices whose latest report says this version is current
    failed: int = 0  # devices that failed to install it and do not run it
    waiting: int = 0  # the other devices that report on this model

    @property
    def tried(self) -> int:
        return self.running + self.failed


def version_counts(reports: list[Report]) -> dict[str, dict[str, VersionCounts]]:
    """model -> version -> counts, from every device's latest report and its failures."""
    latest: dict[tuple[str, str], Report] = {}
    failed: dict[tuple[str, str], set[str]] = defaultdict(set)  # (model, version) -> devices
    versions: dict[str, set[str]] = defaultdict(set)
    for r in reports:
        if not r.model:
            continue
        latest[(r.model, r.device_id)] = r
        for v in (r.version, r.current):
            if v:
                versions[r.model].add(v)
        if r.status == FAILED and r.version:
            failed[(r.model, r.version)].add(r.device_id)
    out: dict[str, dict[str, VersionCounts]] = {}
    for model, vs in versions.items():
        devices = {d: r for (m, d), r in latest.items() if m == model}
        per = {}
        for v in vs:
            running = {d for d, r in devices.items() if r.current == v}
            bad = failed[(model, v)] - running
            per[v] = VersionCounts(len(running), len(bad), len(devices) - len(running) - len(bad))
        out[model] = per
    return out

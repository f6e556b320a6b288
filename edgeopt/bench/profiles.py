"""Target profiles: how a benchmark child is constrained (cores, threads, memory, device).

The shipped profiles live in ``profiles.json`` beside this file; ``--profiles FILE`` (JSON or
YAML, same layout) adds profiles or overrides shipped ones by name, so a team can describe its
own store devices without touching edgeopt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UsageError, first_line

SHIPPED = Path(__file__).with_name("profiles.json")
DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    name: str
    device: str = "cpu"
    threads: int | None = None  # inference threads; None: the runtime's default
    cores: int | None = None  # pin the child to this many cores (the first allowed ones)
    memory_mb: int | None = None  # address-space cap (RLIMIT_AS) for the child
    description: str = ""

    def __post_init__(self):
        if self.device not in DEVICES:
            raise UsageError(f"profile {self.name!r}: device {self.device!r} is not one of {', '.join(DEVICES)}")
        for key in ("threads", "cores", "memory_mb"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UsageError(f"profile {self.name!r}: {key} must be a positive integer or null, got {value!r}")

    def pinned_cores(self) -> list[int] | None:
        """The cores the child is pinned to, or None for no pinning."""
        if self.cores is None:
            return None
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        return allowed[: self.cores]

    def to_json(self) -> dict:
        return {"name": self.name, "device": self.device, "threads": self.threads, "cores": self.pinned_cores(),
                "memory_mb": self.memory_mb, "description": self.description}


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read profiles file {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise UsageError(f"profiles file {path} does not parse: {first_line(e, 1000)}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"profiles file {path} must map profile names to objects "
                         "(keys: device, threads, cores, memory_mb, description)")
    return data


def load_profiles(user_file: str | os.PathLike | None = None) -> dict[str, Profile]:
    data = _read(SHIPPED)
    if user_file is not None:
        data.update(_read(Path(user_file)))
    known = {"device", "threads", "cores", "memory_mb", "description"}
    profiles = {}
    for name, fields in data.items():
        unknown = set(fields) - known
        if unknown:
            raise UsageError(f"profile {name!r}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}")
        profiles[name] = Profile(name=name, **fields)
    return profiles


def resolve_targets(names: list[str], user_file=None) -> list[Profile]:
    profiles = load_profiles(user_file)
    out = []
    for name in names:
        if name not in profiles:
            raise UsageError(f"unknown target {name!r}; available: {', '.join(profiles)}"
                             + ("" if user_file else " (add your own with --profiles FILE)"))
        out.append(profiles[name])
    return out

"""What a published target says about itself, signed in its TUF custom metadata, and the cohort rule.

Every bundle in the repository is one TUF target at ``<model>/<version>/<file>``; its ``custom``
field holds a ``Release``: the model name and version, the channel, the rollout percentage, whether
it is the full bundle or a delta (and against which base version) and its state (``active`` or
``halted``). Signed by the targets key, so a mirror cannot widen a rollout or un-halt a version.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from edgeopt.errors import UsageError

ACTIVE, HALTED = "active", "halted"
FULL, DELTA = "full", "delta"
CUSTOM_KEY = "edgeopt"


@dataclass(frozen=True)
class Release:
    model: str
    version: str
    channel: str = "stable"
    rollout: float = 100.0  # percent of the devices (by cohort) that may take it
    kind: str = FULL  # full | delta
    base: str | None = None  # the version a delta applies to
    state: str = ACTIVE  # active | halted
    reason: str = ""  # why it was halted

    def __post_init__(self):
        from edgeopt.bundle.versions import safe_name

        for what, text in (("model", self.model), ("version", self.version), ("channel", self.channel)):
            if not safe_name(text) or (self.base is not None and not safe_name(self.base)):
                raise UsageError(f"release {what} {text!r} (base {self.base!r}) cannot name a folder")
        check_rollout(self.rollout)
        if self.kind not in (FULL, DELTA) or (self.kind == DELTA) != bool(self.base):
            raise UsageError(f"release {self.model} {self.version}: kind {self.kind!r} with base {self.base!r}")
        if self.state not in (ACTIVE, HALTED):
            raise UsageError(f"release {self.model} {self.version}: unknown state {self.state!r}")

    def to_custom(self) -> dict:
        # TUF signs canonical JSON, which has no floats: the rollout travels in hundredths of a percent
        data = asdict(self)
        data["rollout"] = round(self.rollout * 100)
        return {CUSTOM_KEY: data}

    @classmethod
    def from_custom(cls, custom: dict | None) -> Release | None:
        """The release a target's custom metadata describes, or None for a target edgeopt did not publish."""
        data = (custom or {}).get(CUSTOM_KEY)
        if not isinstance(data, dict):
            return None
        try:
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            fields["rollout"] = int(fields["rollout"]) / 100
            return cls(**fields)
        except (TypeError, ValueError, KeyError, UsageError):
            return None

    def covers(self, device_id: str) -> bool:
        """Whether a device takes this release: active and its cohort below the rollout percentage."""
        return self.state == ACTIVE and cohort(device_id) < self.rollout


def check_rollout(pct: float) -> float:
    if not 0 <= pct <= 100:
        raise UsageError(f"rollout {pct} is not a percentage; give 0 to 100")
    return pct


def cohort(device_id: str) -> float:
    """A device's place in [0, 100): the first 8 bytes of sha256(device id), uniform and stable, so
    the first 5 % stay in every wider rollout and no server-side list of devices is needed."""
    digest = hashlib.sha256(device_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def target_path(model: str, version: str, filename: str) -> str:
    return f"{model}/{version}/{filename}"

"""Everything one federated run needs, as one picklable / JSON-able value: the server and every
store read the same Job (simulation: inside the apps; deployment: from ``flwr run``'s run config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeopt.errors import UsageError
from edgeopt.federate.local import LocalConfig, ModelSpec


@dataclass(frozen=True)
class Privacy:
    """Flower's LocalDpMod on each store's reply: clip the update to ``clip`` (L2), add Gaussian
    noise for (epsilon, delta)-DP with the given sensitivity."""
    clip: float
    epsilon: float
    delta: float = 1e-5
    sensitivity: float = 1.0

    def __post_init__(self):
        if not (self.clip > 0 and self.epsilon > 0 and 0 < self.delta < 1 and self.sensitivity > 0):
            raise UsageError("--dp-clip and --dp-epsilon must be > 0 and --dp-delta in (0, 1)")


@dataclass(frozen=True)
class Job:
    spec: ModelSpec
    local: LocalConfig
    stores: tuple[tuple[str, str, str | None], ...]  # (name, data, held-out or None)
    out: str
    rounds: int = 3
    strategy: str = "fedavg"
    fraction: float = 1.0
    min_stores: int = 2
    round_timeout: float = 600.0
    proximal_mu: float = 0.01
    server_lr: float = 0.01
    old_data: str | None = None
    old_eval: str | None = None
    max_forgetting: float | None = None
    eval_size: int = 2000
    dp: Privacy | None = None

    def __post_init__(self):
        if self.rounds < 1:
            raise UsageError(f"--rounds must be >= 1, got {self.rounds}")
        if not 0 < self.fraction <= 1:
            raise UsageError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not self.round_timeout > 0:
            raise UsageError(f"--round-timeout must be > 0, got {self.round_timeout}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        import json

        d = json.loads(text)
        spec = d.pop("spec")
        for k in ("rows", "arch_kwargs"):
            spec[k] = tuple(tuple(x) for x in spec[k])
        spec["inputs"] = tuple(spec["inputs"])
        return cls(spec=ModelSpec(**spec), local=LocalConfig(**d.pop("local")),
                   stores=tuple(tuple(s) for s in d.pop("stores")),
                   dp=Privacy(**d.pop("dp")) if d.get("dp") else d.pop("dp", None), **d)

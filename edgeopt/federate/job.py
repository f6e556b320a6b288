"""Everything one federated run needs, as one picklable / JSON-able value: the server and every
store read the same Job (simulation: inside the apps; deployment: from ``flwr run``'s run config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeopt.errors import UsageError
from edgeopt.federate.local import LocalConfig, ModelSpec
from edgeopt.federate.wire import WIRES


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
class SecAgg:
    """Flower's SecAgg+ (SecAggPlusWorkflow on the server, secaggplus_mod at each store): the
    server only sees the sum of the stores' masked, quantized updates. ``shares`` / ``threshold``
    as Flower takes them: an int is a count, a float a share of the sampled stores (of the shares).
    Each store's weighted update is clipped to [-clip, clip] and quantized to ``quantization``
    levels; ``max_weight`` (the largest store's samples) keeps the weights in [0, 1]."""
    shares: float = 1.0
    threshold: float = 0.5
    clip: float = 8.0
    quantization: int = 2 ** 22
    modulus: int = 2 ** 32
    max_weight: float = 1000.0

    def __post_init__(self):
        if not (self.shares > 2 or 0 < self.shares <= 1):
            raise UsageError(f"--secagg-shares must be > 2 (a count) or in (0, 1] (a share of the stores), "
                             f"got {self.shares}")
        count_ok = self.threshold >= 2 and (self.shares <= 1 or self.threshold < self.shares)
        if not (0 < self.threshold <= 1 or count_ok):
            raise UsageError(f"--secagg-threshold must be in (0, 1] or a count from 2 below --secagg-shares, "
                             f"got {self.threshold}")
        if not (self.clip > 0 and 0 < self.quantization < self.modulus):
            raise UsageError("--secagg-clip must be > 0 and the quantization range below 2**32")

    def flower(self) -> dict:
        """SecAggPlusWorkflow's arguments (Flower reads an int as a count, a float as a share)."""
        count = lambda x: int(x) if x > 1 else float(x)  # noqa: E731
        return dict(num_shares=count(self.shares), reconstruction_threshold=count(self.threshold),
                    max_weight=float(self.max_weight), clipping_range=float(self.clip),
                    quantization_range=int(self.quantization), modulus_range=int(self.modulus))


def check_wire(wire: str, dp, secagg) -> None:
    if wire not in WIRES:
        raise UsageError(f"--wire {wire!r} does not exist; choose one of {', '.join(WIRES)}")
    if wire != "full" and (dp is not None or secagg is not None):
        raise UsageError(f"--wire {wire} does not go with --dp-clip or --secagg (Flower's LocalDpMod and "
                         "SecAgg+ need every store's whole arrays); use --wire full")


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
    secagg: SecAgg | None = None
    wire: str = "rows"  # what a store sends back, wire.py

    def __post_init__(self):
        if self.rounds < 1:
            raise UsageError(f"--rounds must be >= 1, got {self.rounds}")
        if not 0 < self.fraction <= 1:
            raise UsageError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not self.round_timeout > 0:
            raise UsageError(f"--round-timeout must be > 0, got {self.round_timeout}")
        check_wire(self.wire, self.dp, self.secagg)

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
                   dp=Privacy(**d.pop("dp")) if d.get("dp") else d.pop("dp", None),
                   secagg=SecAgg(**d.pop("secagg")) if d.get("secagg") else d.pop("secagg", None), **d)

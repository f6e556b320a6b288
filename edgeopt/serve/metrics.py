"""The server's Prometheus metrics (``GET /metrics``), through the official ``prometheus_client``.

One registry per server, not the library's global one, so two servers in one process (tests) keep
their own counts.
"""

from __future__ import annotations

from dataclasses import dataclass

# request latency buckets, in seconds: sub-millisecond CPU models up to the per-request timeout
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Metrics:
    registry: object
    requests: object  # Counter{model, version, code}
    errors: object  # Counter{model, reason}
    shed: object  # Counter: 503s of a full queue
    latency: object  # Histogram{model}
    live: object  # Gauge{model, version}: 1 for the version serving now
    swaps: object  # Counter{model, result}: swapped | rejected | rolled_back
    changed: object  # Counter{model}: a live version's files changed on disk

    @classmethod
    def create(cls) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: a scrape is about counts, not start times
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter("edgeopt_serve_requests", "Inference requests answered", ["model", "version", "code"],
                             registry=r),
            errors=Counter("edgeopt_serve_errors", "Inference requests that failed", ["model", "reason"], registry=r),
            shed=Counter("edgeopt_serve_shed", "Requests refused with 503 because the queue was full", registry=r),
            latency=Histogram("edgeopt_serve_request_seconds", "Inference request latency", ["model"],
                              buckets=BUCKETS, registry=r),
            live=Gauge("edgeopt_serve_version_live", "1 for the version each model serves now",
                       ["model", "version"], registry=r),
            swaps=Counter("edgeopt_serve_swaps", "Version changes tried", ["model", "result"], registry=r),
            changed=Counter("edgeopt_serve_files_changed", "A live version's files changed on disk", ["model"],
                            registry=r))

    def set_live(self, model: str, version: str, old: str | None) -> None:
        if old is not None and old != version:
            try:
                self.live.remove(model, old)
            except KeyError:
                pass
        self.live.labels(model, version).set(1)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

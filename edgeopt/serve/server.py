"""``serve(dest=..., ...)``: check the options, build the registry and the app, run uvicorn."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UsageError


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    uds: Path | None = None  # a Unix socket instead of host:port
    token_file: Path | None = None  # bearer token (first line) every route but the health probes needs
    workers: int = 2
    threads: int | None = None
    max_queue: int = 64
    max_body_bytes: int = 16 << 20
    timeout_s: float = 10.0
    rollback_after: int = 50
    rollback_p99_ms: float | None = None
    poll_s: float = 1.0

    def __post_init__(self):
        for flag, value, low in (("--port", self.port, 0), ("--workers", self.workers, 1),
                                 ("--max-queue", self.max_queue, 1), ("--max-body-bytes", self.max_body_bytes, 1),
                                 ("--rollback-after", self.rollback_after, 0)):
            if value < low:
                raise UsageError(f"{flag} {value}: must be >= {low}")
        if self.port > 65535:
            raise UsageError(f"--port {self.port}: must be <= 65535")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads}: must be >= 1")
        for flag, value in (("--timeout", self.timeout_s), ("--rollback-p99-ms", self.rollback_p99_ms),
                            ("--poll", self.poll_s)):
            if value is not None and not value > 0:
                raise UsageError(f"{flag} {value}: must be > 0")


def read_token(path: Path) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--token-file {path}: cannot read it ({e})") from None
    token = lines[0].strip() if lines else ""
    if len(token) < 16 or any(c.isspace() for c in token):
        raise UsageError(f"--token-file {path}: its first line must be a token of at least 16 characters, "
                         "no spaces (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(dest: str | os.PathLike, options: ServeOptions, *, log=lambda msg: None, force_polling: bool = False):
    """(ASGI app, registry): what ``serve`` runs, for a caller that runs its own server."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from edgeopt.errors import UnavailableError

        raise UnavailableError("edgeopt serve needs uvicorn and starlette: pip install 'edgeopt[serve]'") from None
    from edgeopt.serve.app import AppOptions, create_app
    from edgeopt.serve.metrics import Metrics
    from edgeopt.serve.registry import Registry, RegistryOptions

    dest = Path(dest)
    if not dest.is_dir():
        raise UsageError(f"no such install folder: {dest} (pass the --dest of `edgeopt install`)")
    token = read_token(options.token_file) if options.token_file is not None else None
    metrics = Metrics.create()
    registry = Registry(dest, RegistryOptions(options.threads, options.rollback_after, options.rollback_p99_ms),
                        metrics, log)
    app = create_app(registry, AppOptions(options.workers, options.max_queue, options.max_body_bytes,
                                          options.timeout_s, options.poll_s, force_polling),
                     metrics, token=token, log=log)
    return app, registry


def serve(*, dest: str | os.PathLike, options: ServeOptions = ServeOptions(), log=lambda msg: None) -> None:
    """Serve every model installed under ``dest`` until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    app, _ = build(dest, options, log=log)
    if options.uds is None and not is_loopback(options.host):
        log(f"listening on {options.host}, not only this machine" +
            ("" if options.token_file else "; anyone who reaches it can query the models (see --token-file)"))
    where = f"unix:{options.uds}" if options.uds else f"http://{options.host}:{options.port}"
    log(f"serving {dest} on {where} (ready once each model's current version passed its golden check)")
    config = uvicorn.Config(app, host=options.host, port=options.port, uds=str(options.uds) if options.uds else None,
                            log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30,
                            proxy_headers=False)  # no proxy in front: the peer address is the client's
    uvicorn.Server(config).run()

"""`edgeopt serve DEST`: the Open Inference Protocol v2 server over installed models."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--uds", type=click.Path(path_type=Path), metavar="PATH", help="Listen on a Unix socket instead.")
@click.option("--token-file", type=click.Path(path_type=Path), metavar="FILE",
              help="Require 'Authorization: Bearer <first line of FILE>' (health probes excepted).")
@click.option("--rollback-after", default=50, show_default=True, type=int, metavar="N",
              help="After a swap, the first N requests are a probation: an error rolls back (0: off).")
@click.option("--rollback-p99-ms", type=float, metavar="MS",
              help="Also roll back when the p99 latency of those N requests is over MS.")
@click.option("--workers", default=2, show_default=True, type=int, help="Inference threads.")
@click.option("--threads", type=int, help="Intra-op threads per model session (default: the runtime's).")
@click.option("--max-queue", default=64, show_default=True, type=int,
              help="Inference requests admitted at once; beyond it, 503 with Retry-After.")
@click.option("--max-body-bytes", default=16 << 20, show_default=True, type=int, help="Request body limit.")
@click.option("--timeout", "timeout_s", default=10.0, show_default=True, type=float,
              help="Seconds before a request is answered 504.")
@click.option("--poll", "poll_s", default=1.0, show_default=True, type=float,
              help="Rescan DEST at least this often (file events make it rescan at once).")
def command(dest, host, port, uds, token_file, rollback_after, rollback_p99_ms, workers, threads, max_queue,
            max_body_bytes, timeout_s, poll_s):
    """Serve every model installed under DEST (DEST/<name>/current) until interrupted. A new current
    is loaded beside the live version, checked against its golden outputs and swapped in without a
    failed request; a version that fails is never served and current goes back. SIGTERM / SIGINT stop
    it after the requests in flight; exit 2 on bad input."""
    from edgeopt.serve import ServeOptions, serve

    options = ServeOptions(host=host, port=port, uds=uds, token_file=token_file, workers=workers, threads=threads,
                           max_queue=max_queue, max_body_bytes=max_body_bytes, timeout_s=timeout_s,
                           rollback_after=rollback_after, rollback_p99_ms=rollback_p99_ms, poll_s=poll_s)
    serve(dest=dest, options=options,
          log=lambda m: click.echo(f"{time.strftime('%H:%M:%S')} edgeopt serve: {m}", err=True))

"""``edgeopt fleet collect``: receive the agents' reports over HTTP and write them into the folder
that ``fleet status`` and ``fleet promote`` read. One POST = one report (JSON), at most 64 KiB;
anything else is answered 400 and not written. Plain HTTP on the address given: put it behind your
usual TLS proxy for a real fleet."""

from __future__ import annotations

import http.server
import json
import os
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.fleet.reports import Report, write

MAX_BODY = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"a report is 1 to {MAX_BODY} bytes, got {length}")
            report = Report.from_json(json.loads(self.rfile.read(length)))
        except (ValueError, TypeError) as e:
            self.send_error(400, str(e)[:200])
            return
        write(report, self.server.folder)
        self.send_response(204)
        self.end_headers()


def collector(*, reports: str | os.PathLike, host: str = "127.0.0.1", port: int = 8780):
    """A ThreadingHTTPServer writing each POSTed report into ``reports`` (call serve_forever())."""
    folder = Path(reports)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--reports {folder} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        server = http.server.ThreadingHTTPServer((host, port), _Handler)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
    server.folder = folder
    return server

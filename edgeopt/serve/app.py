"""The ASGI application (Starlette): the Open Inference Protocol v2 REST routes and ``/metrics``.

Under load: at most ``max_queue`` inference requests are admitted at once (running or waiting for
one of ``workers`` inference threads); the next one gets 503 with ``Retry-After`` and is counted.
A body over ``max_body_bytes`` is refused before it is read whole; a request still unanswered after
``timeout_s`` gets 504. Every refusal is a JSON ``{"error": "..."}`` of one line, the OIP's error
shape, which tritonclient raises as an ``InferenceServerException`` with that message.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from edgeopt import __version__
from edgeopt.serve import protocol
from edgeopt.serve.metrics import Metrics
from edgeopt.serve.protocol import HEADER_LENGTH, RequestError
from edgeopt.serve.registry import Registry, watch

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # probes answer without the token
CLIENT_ERRORS = ("InvalidArgument", "InvalidGraph")  # runtime errors that mean a bad input, not a bad model


@dataclass(frozen=True)
class AppOptions:
    workers: int = 2  # inference threads (concurrent runs of one session)
    max_queue: int = 64  # inference requests admitted at once, running or waiting
    max_body_bytes: int = 16 << 20
    timeout_s: float = 10.0
    poll_s: float = 1.0  # rescan DEST at least this often (the fallback when inotify is missing)
    force_polling: bool = False


def _error(status: int, message: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body has {declared} bytes; the limit is {limit}")
    if request.headers.get("content-encoding", "identity") != "identity":
        raise RequestError(415, f"Content-Encoding {request.headers['content-encoding']!r} is not supported; "
                                "send the body uncompressed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_length(request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.isdigit():
        raise RequestError(400, f"{HEADER_LENGTH} must be a byte count, got {raw!r}")
    return int(raw)


def _infer_sync(served, body: bytes, header_length: int | None, started: list) -> tuple[bytes, dict]:
    from edgeopt.runtime.errors import BundleError

    started.append(True)  # out of the queue: a timeout from now on is the model's, not the load's
    request, datatypes = protocol.parse(body, header_length)
    feeds = served.feeds(request, datatypes)
    names = served.output_names(request)
    try:
        outputs = served.run(feeds)
    except BundleError as e:
        raise RequestError(400, str(e)) from None
    except Exception as e:  # sorted into the client's fault (400) or the model's (re-raised: 500)
        if type(e).__name__ in CLIENT_ERRORS:
            from edgeopt.errors import first_line

            raise RequestError(400, f"the runtime refused the inputs: {first_line(e)}") from None
        raise
    return protocol.encode(served.name, served.version, request, outputs, names)


def create_app(registry: Registry, options: AppOptions, metrics: Metrics, *, token: str | None = None,
               log=lambda msg: None):
    from concurrent.futures import ThreadPoolExecutor

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    # inference threads: a plain executor and asyncio.wait_for cost less per request than anyio's
    # to_thread with cancel scopes (measured: the event loop's share of a small request)
    executor = ThreadPoolExecutor(options.workers, thread_name_prefix="edgeopt-infer")
    pending = [0]  # admitted inference requests; touched only on the event loop

    def guarded(handler):
        async def wrapper(request):
            if token is not None and request.url.path not in OPEN_PATHS:
                sent = request.headers.get("authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                    why = "a bearer token is required" if not sent else "the bearer token is wrong"
                    return _error(401, f"{why} (Authorization: Bearer <token from --token-file>)",
                                  {"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except RequestError as e:
                return _error(e.status, str(e))
        return wrapper

    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        ok = registry.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(request):
        return JSONResponse({"name": "edgeopt", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(request):
        served = registry.get(request.path_params["name"], request.path_params.get("version"))
        return JSONResponse(served.metadata())

    async def model_ready(request):
        served = registry.get(request.path_params["name"], request.path_params.get("version"))
        return JSONResponse({"name": served.name, "version": served.version, "ready": True})

    async def metrics_route(request):
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def infer(request):
        name, version = request.path_params["name"], request.path_params.get("version")
        if pending[0] >= options.max_queue:
            metrics.shed.inc()
            return _error(503, f"the server is at its limit of {options.max_queue} queued requests; retry "
                               "shortly", {"Retry-After": "1"})
        pending[0] += 1
        start, served, status, failure = time.perf_counter(), None, 500, None
        try:
            body = await _read_body(request, options.max_body_bytes)
            served = registry.get(name, version)
            started: list = []
            job = asyncio.get_running_loop().run_in_executor(
                executor, partial(_infer_sync, served, body, _header_length(request), started))
            content, headers = await asyncio.wait_for(job, options.timeout_s)  # on timeout the run is abandoned
            status = 200
            return Response(content, headers=headers)
        except RequestError as e:
            status = e.status
            return _error(e.status, str(e))
        except asyncio.TimeoutError:  # counts against a version on probation only if it was running
            status, failure = 504, "timeout" if started else None
            return _error(504, f"no answer within {options.timeout_s:g} s")
        except Exception as e:  # noqa: BLE001 - a model that fails: 500, counted, probation decides
            from edgeopt.errors import first_line

            status, failure = 500, f"{type(e).__name__}: {first_line(e)}"
            log(f"{name}: inference failed: {failure}")
            return _error(500, f"inference failed: {failure}")
        finally:
            pending[0] -= 1
            seconds = time.perf_counter() - start
            label = name if name in registry.live else "unknown"  # a client's made-up names are not labels
            metrics.requests.labels(label, served.version if served else "", str(status)).inc()
            if status >= 400:
                reason = "timeout" if status == 504 else failure.split(":")[0] if failure else f"http_{status}"
                metrics.errors.labels(label, reason).inc()
            if served is not None:
                if status == 200:
                    metrics.latency.labels(served.name).observe(seconds)
                if status == 200 or failure:
                    registry.record(served, seconds * 1000, failure)

    async def http_error(request, exc):
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @asynccontextmanager
    async def lifespan(app):
        stop = threading.Event()
        thread = threading.Thread(target=watch, args=(registry, stop),
                                  kwargs={"poll_s": options.poll_s, "force_polling": options.force_polling,
                                          "log": log}, name="edgeopt-serve-registry", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            registry.wake.set()
            thread.join(timeout=10)
            executor.shutdown(wait=False, cancel_futures=True)

    model = "/v2/models/{name}"
    prefixes = (model, model + "/versions/{version}")
    routes = [Route(prefix + "/infer", guarded(infer), methods=["POST"]) for prefix in prefixes]  # tried first
    routes += [Route("/v2/health/live", guarded(live)), Route("/v2/health/ready", guarded(ready)),
               Route("/v2", guarded(server_metadata)), Route("/metrics", guarded(metrics_route))]
    for prefix in prefixes:
        routes += [Route(prefix, guarded(model_metadata)), Route(prefix + "/ready", guarded(model_ready))]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)

"""``edgeopt serve``: the in-store model server (Open Inference Protocol v2 over REST).

app.py: the Starlette routes, admission (bounded queue, body limit, timeout, bearer token);
registry.py: the live version of each model and the verified hot swap; served.py: one loaded
version; protocol.py: OIP JSON and binary tensors; metrics.py: Prometheus; server.py: options and
uvicorn. Needs the ``serve`` extra (uvicorn, starlette, watchfiles, prometheus-client); the device
runtime (``edgeopt.runtime``) does not.
"""

from edgeopt.serve.server import ServeOptions, build, serve

__all__ = ["ServeOptions", "build", "serve"]

"""``edgeopt bench http://HOST:PORT/v2/models/NAME``: a served model beside the same artifact in process.

``cases.expand_url`` (in the parent) reads the model's Open Inference Protocol v2 metadata
(:func:`metadata`) and returns two cases that the ordinary driver interleaves round by round:
runtime ``http`` (a benchmark child whose "session" is ``HttpSession``: binary tensors over one
keep-alive connection per thread) and, when the served version's folder is on this machine
(``edgeopt serve`` reports it), the same artifact on the runtime the server uses, in the child's
own process. The rows then sit in one table, and the server's overhead is the difference between
them. Lean on purpose: the child imports this module, numpy and ``http.client`` only.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass

NUMPY_OF = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
            "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
            "FP32": "float32", "FP64": "float64"}
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Spec:  # what child.make_feeds reads: a name, a numpy dtype, a shape with named dynamic axes
    name: str
    dtype: str
    shape: tuple


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, model name) of http://HOST:PORT/v2/models/NAME; ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    if parts.scheme != "http" or not parts.hostname or len(segments) != 4 or segments[1:3] != ["v2", "models"] \
            or not segments[3]:
        raise ValueError(f"{url}: expected http://HOST:PORT/v2/models/NAME (an Open Inference Protocol v2 model)")
    return parts.hostname, parts.port or 80, urllib.parse.unquote(segments[3])


def _get_json(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, {"error": body[:200].decode(errors="replace")}


def metadata(url: str) -> dict:
    host, port, name = parse_url(url)
    status, doc = _get_json(host, port, f"/v2/models/{urllib.parse.quote(name, safe='')}")
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {doc.get('error', doc)}")
    return doc


class HttpSession:
    """The served model as a benchmark session (child side): ``inputs`` and ``run(feeds)``."""

    def __init__(self, url: str):
        import numpy as np

        self.host, self.port, name = parse_url(url)
        meta = metadata(url)
        self.inputs = [Spec(i["name"], NUMPY_OF[i["datatype"]], tuple(d if d >= 0 else "dynamic" for d in i["shape"]))
                       for i in meta["inputs"] if i["datatype"] in NUMPY_OF]
        self.outputs = [o["name"] for o in meta.get("outputs", [])]
        self.path = f"/v2/models/{urllib.parse.quote(name, safe='')}/infer"
        self._np = np
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import http.client

            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return conn

    def run(self, feeds: dict) -> dict:
        np = self._np
        arrays = [np.ascontiguousarray(feeds[s.name]) for s in self.inputs]
        head = json.dumps({"inputs": [{"name": s.name, "shape": list(a.shape), "datatype": _datatype(a.dtype),
                                       "parameters": {"binary_data_size": a.nbytes}}
                                      for s, a in zip(self.inputs, arrays)],
                           "parameters": {"binary_data_output": True}}).encode()
        conn = self._connection()
        conn.request("POST", self.path, b"".join([head, *(a.tobytes() for a in arrays)]),
                     {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"the server answered {r.status}: {body[:300].decode(errors='replace')}")
        size = int(r.getheader(HEADER_LENGTH) or len(body))
        doc, at, out = json.loads(body[:size]), size, {}
        for o in doc["outputs"]:
            n = o["parameters"]["binary_data_size"]
            out[o["name"]] = np.frombuffer(body[at:at + n], NUMPY_OF[o["datatype"]]).reshape(o["shape"])
            at += n
        return out


def _datatype(dtype) -> str:
    return {v: k for k, v in NUMPY_OF.items()}[str(dtype)]

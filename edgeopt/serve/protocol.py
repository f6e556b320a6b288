"""Open Inference Protocol v2 (REST) tensors: JSON and the binary-tensor extension, both ways.

A request body is JSON, or JSON followed by raw tensor bytes when the client sends the
``Inference-Header-Content-Length`` header (the binary-tensor extension that tritonclient speaks:
each input with ``parameters.binary_data_size`` takes that many bytes, in order). Every check that
can fail on a client's input raises ``RequestError`` with the HTTP status and one line, so a bad
request never reaches the inference runtime.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

NUMPY_OF = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
            "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
            "FP32": "float32", "FP64": "float64"}
DATATYPE_OF = {v: k for k, v in NUMPY_OF.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


class RequestError(Exception):
    """A request the server refuses: ``status`` is the HTTP code, the message says why in one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # an OIP datatype (FP32, INT64, BYTES)
    shape: tuple[int, ...]  # -1 for a dynamic axis

    def to_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def spec_of(entry: dict) -> TensorSpec:
    """A manifest input/output entry (numpy dtype, named dynamic axes) as an OIP tensor spec."""
    dtype = str(entry.get("dtype", "float32"))
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in entry.get("shape", []))
    return TensorSpec(entry["name"], DATATYPE_OF.get(dtype, dtype.upper()), shape)


@dataclass
class InferRequest:
    id: str | None
    tensors: dict[str, np.ndarray]  # numeric inputs by name
    texts: dict[str, list[str]]  # BYTES inputs by name, decoded as UTF-8
    outputs: list[str]  # requested outputs, empty for all
    binary: dict[str, bool] = field(default_factory=dict)  # per requested output: send as binary
    binary_default: bool = False


def _json_header(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise RequestError(400, f"{HEADER_LENGTH} {header_length} is outside the {len(body)}-byte body")
        head, rest = body[:header_length], body[header_length:]
    else:
        head, rest = body, b""
    import orjson

    try:
        doc = orjson.loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the request is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise RequestError(400, "the request must be a JSON object with a non-empty 'inputs' list")
    return doc, rest


def _shape(raw, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise RequestError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    return tuple(raw)


def _decode_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    items, at = [], 0
    for _ in range(count):
        if at + 4 > len(raw):
            raise RequestError(400, f"input {name!r}: binary BYTES data ends early")
        (n,) = struct.unpack_from("<I", raw, at)
        if at + 4 + n > len(raw):
            raise RequestError(400, f"input {name!r}: binary BYTES element runs past its data")
        items.append(raw[at + 4:at + 4 + n])
        at += 4 + n
    if at != len(raw):
        raise RequestError(400, f"input {name!r}: {len(raw) - at} bytes left after {count} BYTES elements")
    return items


def _flatten(data) -> list:
    out, stack = [], [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _one_input(entry, rest: bytes, at: int) -> tuple[str, str, object, int]:
    """(name, datatype, array or list of texts, bytes of ``rest`` consumed)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RequestError(400, "each input must be an object with a 'name'")
    name, datatype = entry["name"], entry.get("datatype")
    if datatype != "BYTES" and datatype not in NUMPY_OF:
        raise RequestError(400, f"input {name!r}: unknown datatype {datatype!r} (use one of BYTES, "
                                f"{', '.join(NUMPY_OF)})")
    shape = _shape(entry.get("shape"), name)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    size = (entry.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or at + size > len(rest):
            raise RequestError(400, f"input {name!r}: binary_data_size {size!r} runs past the request body")
        raw, used = rest[at:at + size], size
        if datatype == "BYTES":
            return name, datatype, [b.decode("utf-8", "replace") for b in _decode_bytes(raw, count, name)], used
        dtype = np.dtype(NUMPY_OF[datatype])
        if size != count * dtype.itemsize:
            raise RequestError(400, f"input {name!r}: {size} bytes for shape {list(shape)} of {datatype} "
                                    f"(expected {count * dtype.itemsize})")
        return name, datatype, np.frombuffer(raw, dtype=dtype).reshape(shape), used
    if "data" not in entry:
        raise RequestError(400, f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    flat = _flatten(entry["data"])
    if len(flat) != count:
        raise RequestError(400, f"input {name!r}: {len(flat)} values for shape {list(shape)} ({count} expected)")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise RequestError(400, f"input {name!r}: BYTES data must be strings")
        return name, datatype, flat, 0
    kinds = (bool,) if datatype == "BOOL" else (int, float) if datatype.startswith("FP") else (int,)
    if not all(isinstance(v, kinds) and (datatype == "BOOL" or not isinstance(v, bool)) for v in flat):
        raise RequestError(400, f"input {name!r}: data does not hold {datatype} values")
    try:
        return name, datatype, np.array(flat, dtype=NUMPY_OF[datatype]).reshape(shape), 0
    except OverflowError:
        raise RequestError(400, f"input {name!r}: a value does not fit {datatype}") from None


def parse(body: bytes, header_length: int | None) -> tuple[InferRequest, dict[str, str]]:
    """The request, and the datatype each input was sent as."""
    doc, rest = _json_header(body, header_length)
    tensors, texts, datatypes, at = {}, {}, {}, 0
    for entry in doc["inputs"]:
        name, datatype, value, used = _one_input(entry, rest, at)
        if name in datatypes:
            raise RequestError(400, f"input {name!r} is given twice")
        at += used
        datatypes[name] = datatype
        (texts if datatype == "BYTES" else tensors)[name] = value
    if at != len(rest):
        raise RequestError(400, f"{len(rest) - at} bytes of binary data follow the inputs that no input claims")
    params = doc.get("parameters") or {}
    wanted = doc.get("outputs") or []
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                               for o in wanted):
        raise RequestError(400, "'outputs' must be a list of objects with a 'name'")
    binary = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", False)) for o in wanted}
    request_id = doc.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, tensors, texts,
                        [o["name"] for o in wanted], binary, bool(params.get("binary_data_output"))), datatypes


def encode(model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray],
           names: list[str]) -> tuple[bytes, dict[str, str]]:
    """The response body and headers; outputs asked for as binary follow the JSON header."""
    entries, blobs = [], []
    for name in names:
        arr = np.ascontiguousarray(outputs[name])
        datatype = DATATYPE_OF.get(arr.dtype.name)
        if datatype is None:
            arr, datatype = arr.astype(np.float32), "FP32"
        entry = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if request.binary.get(name, request.binary_default):
            blob = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.ravel()  # orjson writes numpy arrays natively (float32 in its shortest form)
        entries.append(entry)
    doc = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    import orjson

    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {"content-type": "application/json"}
    return b"".join([head, *blobs]), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}

"""Binary patches of one file against its previous version, exact to the byte (stdlib only).

A patch rebuilds the new file from the old one with three operations: copy a range of the old
file, copy a range of the old file XOR-ed with shipped bytes (a tensor whose values moved a little:
sign, exponent and high mantissa bits mostly cancel; stored as byte planes, the XOR compresses well), and literal
bytes. Regions are paired up as tensors where the format allows: an ONNX file's initializers are
paired by name (or by a unique shape and type), so a changed tensor costs its XOR and an unchanged
one nothing, wherever either sits in its file. Any other file is one region paired with the old
file at the same path. Literal and XOR bytes are lzma-compressed together. The installer checks
the rebuilt file's sha256 against the signed manifest, so a wrong or tampered patch can only fail.
"""

from __future__ import annotations

import json
import lzma
import struct

CHUNK = 4096
MAGIC = b"EDGEOPT-PATCH2\n"


def _onnx_regions(data: bytes) -> list[tuple[str, tuple, bytes]] | None:
    """(name, (dims, dtype), raw bytes) of each initializer with raw_data, or None (not ONNX)."""
    try:
        import onnx

        model = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - not an ONNX file (or no onnx here): patch it as one region
        return None
    return [(_plain(t.name), (tuple(t.dims), t.data_type), t.raw_data) for t in model.graph.initializer
            if len(t.raw_data) >= CHUNK]


def _plain(name: str) -> str:
    """The weight's own name: a wrapper module's prefix (edgeopt's adapter, ``inner.``) is not part of it."""
    while name.startswith("inner."):
        name = name[len("inner."):]
    return name


def _pairs(old: bytes, new: bytes) -> list[tuple[int, int, int, int]]:
    """(new offset, new length, old offset, old length) of regions of ``new`` paired with ``old``."""
    a, b = _onnx_regions(old), _onnx_regions(new)
    if a is None or b is None:
        return [(0, len(new), 0, len(old))]
    by_name = {n: (k, raw) for n, k, raw in a}
    by_kind: dict = {}
    for n, k, raw in a:
        by_kind.setdefault(k, []).append(raw)
    pairs, cursor = [], 0
    for name, kind, raw in b:
        src = by_name.get(name, (None, None))[1]
        if src is None and len(by_kind.get(kind, [])) == 1:
            src = by_kind[kind][0]
        if src is None:
            continue
        at = new.find(raw, cursor)
        if at < 0:
            at = new.find(raw)
        was = old.find(src)
        if at >= 0 and was >= 0:
            pairs.append((at, len(raw), was, len(src)))
            cursor = at + len(raw)
    pairs.sort()
    out, end = [], 0
    for p in pairs:  # drop overlaps (identical small tensors found twice)
        if p[0] >= end:
            out.append(p)
            end = p[0] + p[1]
    return out


def _shuffle(x: bytes) -> bytes:
    """Byte planes of 4-byte words (all first bytes, then all second bytes...): the XOR of two close
    float32 values is zero in its high bytes, and grouped together those zeros compress to nothing."""
    return x if len(x) % 4 else b"".join(x[i::4] for i in range(4))


def _unshuffle(x: bytes) -> bytes:
    if len(x) % 4:
        return x
    out, q = bytearray(len(x)), len(x) // 4
    for i in range(4):
        out[i::4] = x[i * q:(i + 1) * q]
    return bytes(out)


def make(old: bytes, new: bytes) -> bytes:
    ops: list[list] = []  # ["c", old_off, n] | ["x", old_off, n] | ["l", n]
    payload = bytearray()

    def add(kind, off, n, data=b""):
        if ops and ops[-1][0] == kind and (kind == "l" or ops[-1][1] + ops[-1][2] == off) and (
                kind != "x" or ops[-1][2] % CHUNK == 0):  # XOR ops stay whole chunks (shuffled one by one)
            ops[-1][-1] += n
        else:
            ops.append([kind, n] if kind == "l" else [kind, off, n])
        payload.extend(data)

    pos = 0
    for at, n, was, m in _pairs(old, new):
        if at > pos:
            add("l", 0, at - pos, new[pos:at])
        common = min(n, m)
        for i in range(0, common, CHUNK):
            k = min(CHUNK, common - i)
            a, b = old[was + i:was + i + k], new[at + i:at + i + k]
            if a == b:
                add("c", was + i, k)
            else:
                x = (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(k, "little")
                add("x", was + i, k, _shuffle(x))
        if n > common:
            add("l", 0, n - common, new[at + common:at + n])
        pos = at + n
    if pos < len(new):
        add("l", 0, len(new) - pos, new[pos:])
    head = json.dumps({"size": len(new), "ops": ops}, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + lzma.compress(bytes(payload), preset=6)


def apply(old: bytes, patch: bytes) -> bytes:
    """The new file; ValueError when the patch is malformed (the sha256 check catches the rest)."""
    if not patch.startswith(MAGIC):
        raise ValueError("not an edgeopt patch")
    try:
        (n,) = struct.unpack_from("<Q", patch, len(MAGIC))
        start = len(MAGIC) + 8
        head = json.loads(patch[start:start + n])
        payload = lzma.decompress(patch[start + n:])
    except (struct.error, ValueError, lzma.LZMAError) as e:
        raise ValueError(f"malformed patch ({type(e).__name__})") from None
    out, p = bytearray(), 0
    for op in head["ops"]:
        if op[0] == "c":
            out += old[op[1]:op[1] + op[2]]
        elif op[0] == "x":
            for at in range(0, op[2], CHUNK):
                k = min(CHUNK, op[2] - at)
                base = old[op[1] + at:op[1] + at + k]
                x = int.from_bytes(base, "little") ^ int.from_bytes(_unshuffle(payload[p:p + k]), "little")
                out += x.to_bytes(k, "little")
                p += k
        else:
            out += payload[p:p + op[1]]
            p += op[1]
    if len(out) != head["size"]:
        raise ValueError("patch does not rebuild a file of the recorded size")
    return bytes(out)

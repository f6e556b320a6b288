"""Embedding tables in an ONNX graph: a Gather whose data is a constant table (a CTR ranker's
categorical fields, a recommender's items). In such models the tables are most of the bytes, so
INT8 that quantizes only the MLP keeps most of the file FP32. Static QDQ adds Gather to the ops it
quantizes when the graph has tables (onnxruntime's QDQGather: int8 table, DequantizeLinear after
the lookup); dynamic INT8 always does (ort.quantize_dynamic_int8). The manifest counts them."""

from __future__ import annotations

from pathlib import Path

_INT8 = {2, 3}  # onnx.TensorProto.UINT8, INT8


def table_gathers(path: Path) -> dict[str, int]:
    """{"tables": constant-table Gathers, "int8": those whose table is stored in 8 bits}."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    init = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    tables = int8 = 0
    for node in graph.node:
        if node.op_type != "Gather" or not node.input:
            continue
        data = node.input[0]
        src = producer.get(data)
        if src is not None and src.op_type == "DequantizeLinear" and src.input and src.input[0] in init:
            tables, int8 = tables + 1, int8 + 1
        elif data in init and len(init[data].dims) == 2:
            tables += 1
            int8 += init[data].data_type in _INT8
    return {"tables": tables, "int8": int8}


def has_tables(path: Path) -> bool:
    try:
        return table_gathers(path)["tables"] > 0
    except Exception:  # noqa: BLE001 - an unreadable graph is found and reported by the quantizer itself
        return False


def artifact_bytes(path: Path) -> int:
    """A file's bytes; an OpenVINO IR's .xml plus its .bin."""
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        total += path.with_suffix(".bin").stat().st_size
    return total

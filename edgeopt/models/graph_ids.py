"""What an integer input of an exported graph (ONNX, OpenVINO IR) may take: the number of rows of
the table it indexes, read from the graph; models/ids.py reads the same bound from a torch module.

Token ids drawn from a fixed range fail inside the runtime on a model with a smaller vocabulary
(an embedding of 1,000 rows fed id 1,500). An .onnx source draws its sample ids below it
(models/onnx_file.py); bench reads it in the parent and hands it to the child that makes its own
random inputs (the child imports only numpy and the runtime it measures); a bundle's golden
inputs stay inside it (bundle/golden.py).
"""

from __future__ import annotations

from pathlib import Path

# ops an index passes through unchanged on its way to the Gather that uses it
_PASS_THROUGH = {"Cast", "Unsqueeze", "Reshape", "Squeeze", "Flatten", "Identity", "Convert"}
# onnxruntime's fused embedding ops: input name position -> table input position
_FUSED_EMBEDDING = {"EmbedLayerNormalization": {0: 2, 1: 4}, "QEmbedLayerNormalization": {0: 2, 1: 4}}


def index_limits(path: Path, fmt: str) -> dict[str, int | tuple[int, ...]]:
    """{integer input name: number of rows it may index, one number or one per column}; empty when
    the graph does not say."""
    try:
        if fmt == "onnx":
            return _onnx_limits(path)
        if fmt == "openvino":
            return _openvino_limits(path)
    except Exception:  # noqa: BLE001 - only a hint for the child: without it, ids stay in its default range
        return {}
    return {}


def _onnx_limits(path: Path) -> dict[str, int | tuple[int, ...]]:
    """Per input; per column (a tuple) for a 2-D input whose columns reach tables as ``Gather(cats,
    j, axis=1)`` (one table per field) or ``cats + offsets`` (per-field offsets into one table:
    column j owns the rows from its offset to the next field's), as models/ids.py reads a module."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inputs = {i.name for i in graph.input}
    rows = {t.name: t.dims[0] for t in graph.initializer if len(t.dims) >= 1}
    producer = {out: node for node in graph.node for out in node.output}
    width = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in graph.input
             if len(i.type.tensor_type.shape.dim) == 2 and i.type.tensor_type.shape.dim[1].HasField("dim_value")}
    init = {t.name: t for t in graph.initializer}

    def constant(name: str):
        if name in init:
            return numpy_helper.to_array(init[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def source_input(name: str) -> str | None:
        for _ in range(8):
            if name in inputs:
                return name
            node = producer.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                return None
            name = node.input[0]
        return None

    def table_rows(name: str) -> int | None:
        node = producer.get(name)  # a table behind DequantizeLinear (quantized embeddings)
        if node is not None and node.op_type == "DequantizeLinear":
            name = node.input[0]
        return rows.get(name)

    limits: dict[str, int] = {}
    columns: dict[str, dict[int, list]] = {}  # input -> column -> [(table, offset, rows)]
    offsets: dict[str, set] = {}  # table -> the offsets fields start at in it

    def add_column(src: str, j: int, table: str, offset: int, n: int) -> None:
        columns.setdefault(src, {}).setdefault(j, []).append((table, offset, n))
        offsets.setdefault(table, set()).add(offset)

    def by_column(index_name: str, table: str, n: int) -> None:
        node = producer.get(index_name)
        if node is None or len(node.input) != 2:
            return
        if node.op_type == "Add":
            for a, b in (node.input, node.input[::-1]):
                src, off = source_input(a), constant(b)
                if src in width and off is not None and off.dtype.kind in "iu" and off.size == width[src] > 1:
                    for j, o in enumerate(off.reshape(-1).tolist()):
                        add_column(src, j, table, int(o), n)
                    return
        elif node.op_type == "Gather" and next((a.i for a in node.attribute if a.name == "axis"), 0) == 1:
            src, j = source_input(node.input[0]), constant(node.input[1])
            if src in width and j is not None and j.size == 1:
                add_column(src, int(j.reshape(-1)[0]) % width[src], table, 0, n)

    def add(index_name: str, table: str) -> None:
        src, n = source_input(index_name), table_rows(table)
        if src and n:
            limits[src] = min(limits.get(src, n), n)
            if src in width:
                offsets.setdefault(table, set()).add(0)
        elif n:
            by_column(index_name, table, n)

    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) == 2:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if axis == 0:
                add(node.input[1], node.input[0])
        for index_pos, table_pos in _FUSED_EMBEDDING.get(node.op_type, {}).items():
            if len(node.input) > table_pos and node.input[index_pos]:
                add(node.input[index_pos], node.input[table_pos])
    return _with_columns(limits, columns, offsets, width)


def _with_columns(limits: dict, columns: dict, offsets: dict, width: dict) -> dict:
    """``limits`` with a bound per column for the inputs in ``columns`` (input -> column -> [(table,
    offset, rows)]): column j owns its table's rows from its offset to the next offset in that
    table (``offsets``: table -> the offsets fields start at), or the table's end."""
    for src, uses in columns.items():
        own = {j: min(min((p for p in offsets[t] if p > o), default=n) - o for t, o, n in u) for j, u in uses.items()}
        cap = limits.get(src)  # the input also reaches a table as it is
        fill = min(own.values()) if cap is None else cap  # a column no table reads
        bounds = tuple(own.get(j, fill) if cap is None else min(own.get(j, fill), cap) for j in range(width[src]))
        limits[src] = bounds[0] if len(set(bounds)) == 1 else bounds
    return limits


def _openvino_limits(path: Path) -> dict[str, int]:
    import openvino as ov

    from edgeopt.runtime.openvino import port_name

    model = ov.Core().read_model(str(path))
    limits: dict[str, int] = {}
    columns: dict[str, dict[int, list]] = {}
    offsets: dict[str, set] = {}
    width: dict[str, int] = {}

    def walk(node, types):
        for _ in range(8):
            if node.get_type_name() not in types:
                return node
            node = node.input_value(0).get_node()
        return node

    for op in model.get_ordered_ops():
        if op.get_type_name() != "Gather":
            continue
        axis = walk(op.input_value(2).get_node(), _PASS_THROUGH)
        if axis.get_type_name() != "Constant" or int(axis.get_data().reshape(-1)[0]) != 0:
            continue
        src = walk(op.input_value(1).get_node(), _PASS_THROUGH)
        table = walk(op.input_value(0).get_node(), _PASS_THROUGH | {"Multiply", "Subtract"})
        if table.get_type_name() != "Constant":
            continue
        shape = table.get_output_partial_shape(0)
        if not (shape.rank.is_static and shape[0].is_static):
            continue
        n, key = shape[0].get_length(), table.get_friendly_name()
        if src.get_type_name() == "Parameter":
            name = port_name(src.output(0), src.get_friendly_name())
            limits[name] = min(limits.get(name, n), n)
            offsets.setdefault(key, set()).add(0)
        elif src.get_type_name() == "Add":  # ids plus per-field offsets into one table
            ends = [walk(src.input_value(i).get_node(), _PASS_THROUGH) for i in (0, 1)]
            for param, const in (ends, ends[::-1]):
                ps = param.get_output_partial_shape(0)
                if (param.get_type_name() != "Parameter" or const.get_type_name() != "Constant"
                        or ps.rank.get_length() != 2 or not ps[1].is_static):
                    continue
                off = const.get_data().reshape(-1)
                if off.size == ps[1].get_length() > 1 and off.dtype.kind in "iu":
                    name = port_name(param.output(0), param.get_friendly_name())
                    width[name] = off.size
                    for j, o in enumerate(off.tolist()):
                        columns.setdefault(name, {}).setdefault(j, []).append((key, int(o), n))
                        offsets.setdefault(key, set()).add(int(o))
                    break
    return _with_columns(limits, columns, offsets, width)

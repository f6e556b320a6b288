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


def index_limits(path: Path, fmt: str) -> dict[str, int]:
    """{integer input name: number of rows it may index}; empty when the graph does not say."""
    try:
        if fmt == "onnx":
            return _onnx_limits(path)
        if fmt == "openvino":
            return _openvino_limits(path)
    except Exception:  # noqa: BLE001 - only a hint for the child: without it, ids stay in its default range
        return {}
    return {}


def _onnx_limits(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inputs = {i.name for i in graph.input}
    rows = {t.name: t.dims[0] for t in graph.initializer if len(t.dims) >= 1}
    producer = {out: node for node in graph.node for out in node.output}

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

    def add(index_name: str, table: str) -> None:
        src, n = source_input(index_name), table_rows(table)
        if src and n:
            limits[src] = min(limits.get(src, n), n)

    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) == 2:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if axis == 0:
                add(node.input[1], node.input[0])
        for index_pos, table_pos in _FUSED_EMBEDDING.get(node.op_type, {}).items():
            if len(node.input) > table_pos and node.input[index_pos]:
                add(node.input[index_pos], node.input[table_pos])
    return limits


def _openvino_limits(path: Path) -> dict[str, int]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    limits: dict[str, int] = {}

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
        if src.get_type_name() == "Parameter" and table.get_type_name() == "Constant":
            shape = table.get_output_partial_shape(0)
            if shape.rank.is_static and shape[0].is_static:
                name = next(iter(sorted(src.output(0).get_names())), src.get_friendly_name())
                n = shape[0].get_length()
                limits[name] = min(limits.get(name, n), n)
    return limits

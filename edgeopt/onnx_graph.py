"""Small in-place edits of an ONNX ModelProto shared by the exporters and the quantizers."""

from __future__ import annotations


def drop_unused_initializers(model) -> int:
    """Remove initializers no node or graph output reads (e.g. a weight a rewrite replaced);
    returns how many were removed."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    removed = len(graph.initializer) - len(keep)
    if removed:
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return removed


def name_unnamed_nodes(model) -> int:
    """Give every unnamed node the stable name ``<op_type>_<index>`` (quantizer options and the
    accuracy gate's fallback address nodes by name); returns how many were named."""
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
            named += 1
    return named

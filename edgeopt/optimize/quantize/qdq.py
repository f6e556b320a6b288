"""Exact rewrites between the two int8 activation encodings of a QDQ graph.

onnxruntime's fast x86 integer kernels take uint8 activations (U8S8); TensorRT takes int8 with
zero point 0. The two encode the same numbers: int8 q with zero point z equals uint8 q+128 with
zero point z+128. So one gated model serves both: activations are stored as uint8 (zero point
128 when symmetric) for the CPU and shifted back to int8 for TensorRT.
"""

from __future__ import annotations

import numpy as np

from edgeopt.onnx_graph import drop_unused_initializers


def _activation_quantizers(model):
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and len(node.input) > 2 \
                and node.input[2] in inits:
            yield node, [c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"], inits


def shift_activations(model, *, to: str) -> dict:
    """Re-encode activation Q/DQ pairs in place: to='uint8' (CPU) or to='int8' (TensorRT).

    int8 -> uint8 is always exact. uint8 -> int8 is exact for zero point 128; a uint8 pair with
    zero point 0 (non-negative values such as softmax outputs) keeps its range with a doubled
    scale, losing one bit; other zero points are left alone and reported.
    """
    from onnx import TensorProto, numpy_helper

    src, dst = (np.int8, np.uint8) if to == "uint8" else (np.uint8, np.int8)
    elem = TensorProto.UINT8 if to == "uint8" else TensorProto.INT8
    value_info = {v.name: v for v in model.graph.value_info}
    report = {"exact": 0, "lossy": 0, "kept": 0}
    for q, dqs, inits in list(_activation_quantizers(model)):
        zp = numpy_helper.to_array(inits[q.input[2]])
        if zp.dtype != src:
            continue
        scale = numpy_helper.to_array(inits[q.input[1]])
        if to == "uint8":
            new_zp, new_scale = (zp.astype(np.int16) + 128).astype(np.uint8), scale
            report["exact"] += 1
        elif np.all(zp == 128):
            new_zp, new_scale = np.zeros_like(zp, dtype=np.int8), scale
            report["exact"] += 1
        elif np.all(zp == 0):
            new_zp, new_scale = np.zeros_like(zp, dtype=np.int8), (scale * 2).astype(scale.dtype)
            report["lossy"] += 1
        else:
            report["kept"] += 1
            continue
        zp_name, scale_name = f"{q.output[0]}_zp_{to}", f"{q.output[0]}_scale_{to}"
        model.graph.initializer.extend([numpy_helper.from_array(new_zp, zp_name),
                                        numpy_helper.from_array(new_scale, scale_name)])
        for node in (q, *dqs):
            node.input[1], node.input[2] = scale_name, zp_name
        if q.output[0] in value_info:  # recorded element types must follow
            value_info[q.output[0]].type.tensor_type.elem_type = elem
    return report


def shift_file(src, dst, *, to: str) -> dict:
    import onnx

    model = onnx.load(str(src))
    report = shift_activations(model, to=to)
    drop_unused_initializers(model)
    onnx.save(model, str(dst))
    return report

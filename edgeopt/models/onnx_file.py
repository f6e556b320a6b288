"""ONNX files as sources (quantize / benchmark / package): onnxruntime is the reference."""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.models.adapter import random_feeds
from edgeopt.models.base import LoadedModel
from edgeopt.spec import IOSpec, TensorSpec

_ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 3: "int8",
                2: "uint8", 9: "bool"}


def _specs(values, initializers=()) -> tuple[TensorSpec, ...]:
    out = []
    for i, v in enumerate(values):
        if v.name in initializers:
            continue
        t = v.type.tensor_type
        shape = []
        for j, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or ("batch" if j == 0 else f"dim{j}"))
        out.append(TensorSpec(v.name, _ONNX_DTYPES.get(t.elem_type, "float32"), tuple(shape)))
    return tuple(out)


def onnx_io(path: Path) -> IOSpec:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UsageError(f"{path.name} is not an ONNX model ({type(e).__name__}); "
                         "check the file or re-export it") from None
    if not model.graph.node:
        raise UsageError(f"{path.name} is not an ONNX model (no graph nodes); check the file or re-export it")
    inits = {i.name for i in model.graph.initializer}
    return IOSpec(_specs(model.graph.input, inits), _specs(model.graph.output))


def load_onnx(path: Path, inputs=None) -> LoadedModel:
    io = onnx_io(path)
    if inputs:
        if [s.name for s in inputs] != [s.name for s in io.inputs]:
            raise UsageError(f"--input contradicts {path.name}, whose inputs are "
                             f"{', '.join(s.name for s in io.inputs)}")
        io = IOSpec(tuple(inputs), io.outputs)
    state = {}

    def reference(feeds):
        if "session" not in state:
            from edgeopt.backends import get_runtime

            state["session"] = get_runtime("onnxruntime").load(str(path))
        return state["session"].run(feeds)

    from edgeopt.models.graph_ids import index_limits
    from edgeopt.models.ids import IdLimits

    rows = index_limits(path, "onnx")  # ids below the rows of the table each integer input indexes
    model = LoadedModel(name=path.stem, source=path, family="onnx", io=io, onnx_path=path, reference=reference,
                        sample_feeds=lambda: [random_feeds(io.inputs, batch=b, seed=b, id_ranges=rows) for b in (1, 3)])
    model.metadata["id_limits"] = IdLimits(rows, rows)
    return model

"""OpenVINO on the build side: availability and I/O specs around the device runtime's engine
(edgeopt/runtime/openvino.py), which runs IR (.xml + .bin) or ONNX on the CPU with the precision
hints, the compile cache and the sequence-length buckets (runtime/buckets.py) the device uses."""

from __future__ import annotations

from edgeopt.backends.base import Availability, EngineSession, dist_version, not_installed
from edgeopt.spec import TensorSpec

_OV_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i64": "int64",
              "i32": "int32", "i8": "int8", "u8": "uint8", "boolean": "bool"}


def _spec(port, name: str) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else f"dim{j}" for j, d in enumerate(port.get_partial_shape()))
    return TensorSpec(name, _OV_DTYPES.get(port.get_element_type().get_type_name(), "float32"), shape)


def session(engine) -> EngineSession:
    """An OvEngine with its I/O specs, named as the engine names its ports."""
    compiled = engine.compiled
    return EngineSession(engine, [_spec(p, n) for p, n in zip(compiled.inputs, engine.input_names)],
                         [_spec(p, n) for p, n in zip(compiled.outputs, engine.output_names)])


class OpenVinoRuntime:
    name = "openvino"
    formats = ("openvino", "onnx")

    def availability(self) -> Availability:
        version = dist_version("openvino")
        if version is None:
            return not_installed(self.name, "openvino", "pip install 'edgeopt[openvino]'")
        import openvino as ov

        return Availability(self.name, True, version, details={"devices": ov.Core().available_devices})

    def load(self, path, *, threads=None, device="cpu", precision="fp32", cache_dir=None, buckets=None,
             max_variants=None) -> EngineSession:
        """``buckets``: None reads them from the IR, False runs dynamic shapes only (see OvEngine)."""
        from edgeopt.runtime.openvino import MAX_VARIANTS, OvEngine

        return session(OvEngine(path, threads=threads, precision=precision, cache_dir=cache_dir, buckets=buckets,
                                max_variants=MAX_VARIANTS if max_variants is None else max_variants))

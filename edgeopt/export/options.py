"""What an export is asked for: the targets, precisions and checks of ``edgeopt export``, validated
when made (a UsageError names the flag). Used by the export job (pipeline.py) and by the steps it
runs (mobile.py, verify.py), so it lives below all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeopt.errors import UsageError

if TYPE_CHECKING:
    from edgeopt.models.base import LoadedModel
    from edgeopt.optimize.quantize.config import Int8Config

TARGETS = ("onnx", "openvino", "tensorrt", "mobile")


@dataclass
class ExportOptions:
    targets: tuple[str, ...] = ("onnx", "openvino")
    fp16: bool = False
    exporter: str = "auto"
    threads: int | None = None
    int8: "Int8Config | None" = None  # INT8 with the accuracy gate (edgeopt.optimize.quantize)
    calib: str | None = None  # DATA for calibration (text models: built-in titles when absent)
    eval_data: str | None = None  # DATA for the gate (default: held out from calib)
    atol: float | None = None  # overrides the per-format verification tolerances (verify.py)
    rtol: float | None = None
    shape_buckets: str = "auto"  # OpenVINO text IRs: auto, off or lengths "8,16,32" (export/bucket_checks.py)
    reference: "LoadedModel | None" = None  # the INT8 gate scores against this model (a teacher), not FP32
    mobile_shapes: dict[str, int] | None = None  # --to mobile: axis sizes of the static-shape .ort (export/mobile.py)

    def __post_init__(self):
        if not self.targets:
            raise UsageError(f"--to is empty; choose one or more of {', '.join(TARGETS)} (comma-separated)")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise UsageError(f"unknown --to target {unknown[0]!r}; choose from {', '.join(TARGETS)}")
        if "onnx" not in self.targets:  # every other target is built from the ONNX file
            self.targets = ("onnx", *self.targets)
        for name, value in (("--atol", self.atol), ("--rtol", self.rtol)):
            if value is not None and value < 0:
                raise UsageError(f"{name} must be >= 0, got {value}")
        if self.exporter not in ("auto", "dynamo", "torchscript"):
            raise UsageError(f"unknown exporter {self.exporter!r}; choose auto, dynamo or torchscript")

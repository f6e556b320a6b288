"""What an INT8 rung built: the candidate record that the accuracy gate, the speed check and the
manifest read. How a candidate was made is a typed ``Recipe``, which also says what the manifest
records about it (for the candidate list and, when kept, for the artifact)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edgeopt.optimize.metrics import Quality

# quantize_dynamic_int8's weights (ort.py), for the manifest
DYNAMIC_WEIGHTS = "int8 per output channel, 7-bit range"


@dataclass
class Recipe:
    """How a candidate was built. ``onnxruntime_only``: its ops run in onnxruntime alone
    (contrib ops, MatMulInteger), so the artifact lists no other runtime."""

    onnxruntime_only: ClassVar[bool] = False

    def candidate_fields(self) -> dict:
        """Keys for the manifest's ``int8.candidates`` entry."""
        return {}

    def artifact_fields(self) -> dict:
        """Keys for the manifest's artifact record when the candidate is kept."""
        return self.candidate_fields()


@dataclass
class StaticQdq(Recipe):
    """Static QDQ (onnxruntime's quantizer or NNCF on the ONNX graph)."""

    activations: str = "symmetric"  # symmetric (TensorRT-ready) | asymmetric (faster in onnxruntime)

    def candidate_fields(self) -> dict:
        return {"activations": self.activations}


@dataclass
class DynamicInt8(Recipe):
    """onnxruntime dynamic INT8, with its per-token nodes and SmoothQuant scaling."""

    onnxruntime_only: ClassVar[bool] = True
    per_token_nodes: list[str] = field(default_factory=list)
    smooth: dict | None = None
    fused_graph: bool = False  # built from onnxruntime's fused-attention graph (ort_fused.py)

    def candidate_fields(self) -> dict:
        return {"per_token_nodes": self.per_token_nodes, **({"smooth": self.smooth} if self.smooth else {})}

    def artifact_fields(self) -> dict:
        out = {"graph": "onnxruntime-fused"} if self.fused_graph else {}
        out["weights"] = DYNAMIC_WEIGHTS
        if self.per_token_nodes:
            out["per_token_nodes"] = self.per_token_nodes
        if self.smooth:
            out["smooth"] = self.smooth
        return out


@dataclass
class Blockwise(Recipe):
    """onnxruntime MatMulNBits: 8-bit weights and activations per block."""

    onnxruntime_only: ClassVar[bool] = True
    block_size: int = 128

    def candidate_fields(self) -> dict:
        return {"block_size": self.block_size}

    def artifact_fields(self) -> dict:
        b = self.block_size
        return {"block_size": b, "weights": f"int8 symmetric, one scale per block of {b} input channels",
                "activations": f"int8 per block of {b} at run time (MatMulNBits, accuracy_level 4)"}


@dataclass
class NncfIr(Recipe):
    """NNCF post-training quantization of the OpenVINO IR."""

    preset: str | None = None  # performance | mixed | None (NNCF's default)

    def candidate_fields(self) -> dict:
        return {"nncf_preset": self.preset} if self.preset else {}


@dataclass
class OpenvinoDynamic(Recipe):
    """OpenVINO INT8 weights, activations quantized per group at run time."""

    group_size: int = 128

    def candidate_fields(self) -> dict:
        return {"activation_group_size": self.group_size}


@dataclass
class OpenvinoWeights(Recipe):
    """OpenVINO weight compression of a model with embedding tables: tables and other weights in
    their own modes, activations FP32 (openvino_nncf.compress_tables)."""

    tables: str = "int4_asym"
    weights: str = "int8_asym"

    def candidate_fields(self) -> dict:
        return {"table_weights": self.tables, "other_weights": self.weights}


@dataclass
class Int8Candidate:
    name: str  # static | dynamic | blockwise | openvino-qdq | openvino-nncf | openvino-dynamic | openvino-weights
    path: Path
    runtime: str
    quality: Quality | None = None
    fallback_nodes: list[str] = field(default_factory=list)
    passed: bool = False
    seconds: float = 0.0
    attempts: int = 0
    p50_ms: float | None = None
    recipe: Recipe = field(default_factory=Recipe)
    quantizable_nodes: int | None = None  # weight nodes the fallback search could choose from
    skipped: str | None = None  # why no fallback search ran
    vs_fp32: float | None = None  # the speed check: p50 over FP32's
    rejected: str | None = None  # why a candidate that passed the gate was not kept
    probe_samples: int | None = None  # a speed probe, calibrated on this many samples (openvino_rungs.py)
    variants: list[dict] | None = None  # the kept OpenVINO candidate: every way tried

    def to_json(self) -> dict:
        d = {"name": self.name, "path": self.path.name, "runtime": self.runtime, "passed": self.passed,
             "quality": self.quality.to_json() if self.quality else None,
             "fallback_nodes": self.fallback_nodes, "seconds": round(self.seconds, 2),
             "attempts": self.attempts, "p50_ms": self.p50_ms}
        if self.quantizable_nodes is not None:
            d["quantizable_nodes"] = self.quantizable_nodes
        if self.skipped:
            d["skipped"] = self.skipped
        d.update(self.recipe.candidate_fields())
        if self.vs_fp32 is not None:
            d["vs_fp32"] = self.vs_fp32
        if self.probe_samples is not None:
            d["probe"] = {"calibration_samples": self.probe_samples}
        if self.rejected:
            d["rejected"] = self.rejected
        if self.variants is not None:
            d["variants"] = self.variants
        return d

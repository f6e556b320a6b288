"""``--to mobile``: ORT-format artifacts for ONNX Runtime Mobile, built from each kept ONNX artifact.

Each ONNX artifact that verified (``model.onnx``, ``model.int8.onnx``) becomes ``mobile/<stem>.ort``
through onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``, fixed
optimizations for an ARM target: no x86-only NCHWc layout, int8 QDQ kept for ARM kernels). A model
with dynamic axes also gets a static-shape variant ``mobile/<stem>.static.ort`` (NNAPI needs fixed
shapes). ``mobile/required_operators.config`` lists the operators of every ``.ort`` for a reduced
ORT build. Each record carries ORT's NNAPI / CoreML usability analysis of its graph
(``mobile.partitions``), and each ``.ort`` is run and compared like every other artifact: FP32
against the source model, INT8 against the INT8 ONNX file it was made from.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from edgeopt.errors import UsageError, first_line
from edgeopt.manifest import ArtifactRecord

if TYPE_CHECKING:
    from edgeopt.export.options import ExportOptions
    from edgeopt.models.base import LoadedModel

FOLDER = "mobile"
CONFIG = f"{FOLDER}/required_operators.config"
SOURCES = ("model.onnx", "model.int8.onnx")  # the ONNX artifacts a phone runs (not TensorRT's QDQ file)


def parse_mobile_shapes(text: str | None) -> dict[str, int]:
    """``batch=1,sequence=128`` -> {axis name: size} for the static-shape variant."""
    if not text:
        return {}
    dims = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, value = item.partition("=")
        if not name or not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"--mobile-shapes {text!r}: expected AXIS=SIZE pairs such as batch=1,sequence=128")
        dims[name.strip()] = int(value)
    return dims


def check_axes(dims: dict[str, int], specs) -> None:
    """Every ``--mobile-shapes`` axis must be a dynamic axis of the model's inputs (checked before
    anything is exported)."""
    names = {d for s in specs for d in s.shape if isinstance(d, str)}
    unknown = sorted(set(dims) - names)
    if unknown:
        raise UsageError(f"--mobile-shapes names axis {unknown[0]!r}; the model's dynamic axes are "
                         f"{', '.join(sorted(names)) or 'none'}")


def convert(onnx_path: Path, ort_path: Path) -> None:
    """onnxruntime's converter, Fixed optimization style for ARM; a UsageError naming the op it cannot take."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix=".ort-convert-", dir=ort_path.parent) as tmp:
        src = Path(tmp) / "src" / "model.onnx"
        src.parent.mkdir()
        shutil.copyfile(onnx_path, src)
        if onnx_path.with_name(onnx_path.name + ".data").exists():
            shutil.copyfile(onnx_path.with_name(onnx_path.name + ".data"), src.with_name(onnx_path.name + ".data"))
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet("ort_format_model.utils"):  # progress
                convert_onnx_models_to_ort(src, output_dir=Path(tmp) / "out",
                                           optimization_styles=[OptimizationStyle.Fixed], target_platform="arm")
        except Exception as e:  # noqa: BLE001 - ORT cannot load the graph: name the op when it says which
            raise UsageError(f"ORT Mobile cannot convert {onnx_path.name}: {_why(e)}") from None
        shutil.move(Path(tmp) / "out" / "model.ort", ort_path)


def _why(e: Exception) -> str:
    """ORT's load error, reduced to the op it has no kernel for when it names one."""
    text = str(e)
    for pattern in (r"([\w.]*:?\w+)\(-?\d+\) is not a registered function/op",
                    r"implementation for (\w+\(\d+\))", r"No Op registered for (\w+) with domain_version of \d+"):
        found = re.search(pattern, text)
        if found:
            return f"op {found.group(1)} has no ONNX Runtime kernel"
    return first_line(e, 200)


def partition_report(onnx_path: Path) -> dict:
    """ORT's NNAPI / CoreML usability analysis (``check_onnx_model_mobile_usability``'s functions),
    as data: per execution provider the nodes it takes, its partitions, and the ops that fall back."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix=".ort-usability-") as tmp:
        basic = Path(tmp) / onnx_path.name  # the checker looks at the graph after basic optimizations
        optimize_model(onnx_path, basic, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(basic).model_with_shape_info
    checks = {"nnapi": lambda m: uc.check_nnapi_partitions(m, True),
              "coreml_mlprogram": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
              "coreml_neuralnetwork": lambda m: uc.check_coreml_partitions(
                  m, True, "coreml_supported_neuralnetwork_ops.md")}
    report, any_worth = {}, False
    for ep, check in checks.items():
        info = check(model)
        suitability = info.suitability().name if info.num_nodes else "NO"
        any_worth |= suitability != "NO"
        report[ep] = {"nodes": info.num_nodes, "supported_nodes": info.num_supported_nodes,
                      "partitions": info.num_partitions,
                      "partition_sizes": [len(g) for g in info.supported_groups],
                      "suitability": suitability,
                      "unsupported_ops": sorted(info.unsupported_ops),
                      "fallback": {"unsupported_op": info.nodes_unsupported_due_to_op,
                                   "dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
                                   "rank": info.num_unsupported_nodes_due_to_rank},
                      "ops_with_unsupported_rank": sorted(info.ops_with_unsupported_rank),
                      "caveats": info.supported_ops_checker.get_caveats()}
    report["recommendation"] = ("compare NNAPI (Android) / CoreML (iOS) against the CPU EP" if any_worth
                                else "use the CPU EP")
    return report


def static_shapes(onnx_path: Path, dims: dict[str, int], feeds: list[dict], specs: list | tuple = (),
                  max_length: int | None = None) -> dict[str, list[int]] | None:
    """{input: fixed shape} for the static variant, or None when every input is already fixed. An
    axis named in ``--mobile-shapes`` (by the manifest's name for it, e.g. ``batch``) takes that size, else 1 on the first axis, else a text model's maximum length on
    the second, else the sample's size."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    spec_axes = {s.name: s.shape for s in specs}
    shapes, names = {}, set()
    for inp in (i for i in graph.input if i.name not in initializers):
        shape = []
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
                continue
            spec = spec_axes.get(inp.name, ())
            aliases = {d.dim_param} | ({spec[axis]} if axis < len(spec) and isinstance(spec[axis], str) else set())
            names |= aliases - {""}
            sample = feeds[0].get(inp.name) if feeds else None
            default = 1 if axis == 0 else max_length if axis == 1 and max_length else \
                sample.shape[axis] if sample is not None else 1
            shape.append(next((dims[a] for a in aliases if a in dims), default))
        shapes[inp.name] = shape
    return shapes if names else None


def fix_shapes(onnx_path: Path, shapes: dict[str, list[int]], out: Path) -> None:
    """onnxruntime.tools.make_dynamic_shape_fixed's functions on each input, then the output shapes."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(onnx_path))
    for name, shape in shapes.items():
        make_input_shape_fixed(model.graph, name, shape)
    fix_output_shapes(model)
    onnx.save(model, str(out))


def fit(feed: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """A sample cut or zero-padded to the static shapes (zero: padding tokens / black pixels)."""
    out = {}
    for name, a in feed.items():
        if name not in shapes:
            out[name] = a
            continue
        target = shapes[name]
        a = a[tuple(slice(0, n) for n in target)]
        pad = [(0, n - s) for n, s in zip(target, a.shape)]
        out[name] = np.pad(a, pad) if any(p for _, p in pad) else a
    return out


def add_mobile_artifacts(model: "LoadedModel", stage: Path, artifacts: list[ArtifactRecord], feeds, refs,
                         opts: "ExportOptions", log: Callable[[str], None], not_built: list[dict]) -> None:
    """Append the ``.ort`` records (see the module docstring); a source that cannot be converted goes
    to ``not_built`` with the op that stopped it."""
    from edgeopt.export.verify import verify_artifact

    sources = [a for a in artifacts if a.path in SOURCES and a.verification.get("passed")]
    if not sources:
        not_built.append({"path": f"{FOLDER}/", "error": "no verified ONNX artifact to convert for ORT Mobile"})
        return
    (stage / FOLDER).mkdir(exist_ok=True)
    shapes = static_shapes(stage / "model.onnx", opts.mobile_shapes or {}, feeds, model.io.inputs,
                           model.max_length if model.tokenizer is not None else None)
    static_feeds = static_refs = None
    if shapes is not None:
        static_feeds = [fit({k: v[i:i + 1] for k, v in f.items()}, shapes)
                        for f in feeds for i in range(len(next(iter(f.values()))))][:4]
        static_refs = [model.reference(f) for f in static_feeds]
    made = []
    with tempfile.TemporaryDirectory(prefix=".mobile-", dir=stage) as tmp:
        for src in sources:
            stem = Path(src.path).stem
            variants = [(f"{FOLDER}/{stem}.ort", stage / src.path, feeds, refs, None)]
            if shapes is not None:
                fixed = Path(tmp) / f"{stem}.static.onnx"
                fix_shapes(stage / src.path, shapes, fixed)
                variants.append((f"{FOLDER}/{stem}.static.ort", fixed, static_feeds, static_refs, shapes))
            for rel, onnx_path, vfeeds, vrefs, vshapes in variants:
                log(f"converting {src.path} to ORT format ({rel})")
                try:
                    convert(onnx_path, stage / rel)
                except UsageError as e:
                    not_built.append({"path": rel, "error": str(e)})
                    continue
                made.append(stage / rel)
                log(f"verifying {rel} with onnxruntime")
                if src.precision == "fp32":
                    verification = verify_artifact(stage / rel, "onnxruntime", "onnx", "fp32", vfeeds, vrefs, opts)
                    vs = "source model"
                else:  # INT8: the same outputs as the gated INT8 ONNX file it was made from
                    from edgeopt.backends import get_runtime

                    session = get_runtime("onnxruntime").load(str(onnx_path), threads=opts.threads)
                    verification = verify_artifact(stage / rel, "onnxruntime", "ort", "int8", vfeeds,
                                                    [session.run(f) for f in vfeeds], opts)
                    vs = src.path
                verification["vs"] = vs
                log(f"NNAPI / CoreML usability of {rel}")
                extra = {"source": src.path, "operator_config": CONFIG,
                         "partitions": partition_report(onnx_path)}
                if vshapes is not None:
                    extra["static_shapes"] = vshapes
                artifacts.append(ArtifactRecord(rel, "ort", src.precision, ["onnxruntime"],
                                                verification=verification, quality=src.quality, extra=extra))
    if made:
        from onnxruntime.tools.ort_format_model.utils import create_config_from_models

        with _quiet("ort_format_model.utils"):
            create_config_from_models(made, stage / CONFIG, enable_type_reduction=False)
        text = (stage / CONFIG).read_text()  # its comments name the staging paths: keep them relative
        (stage / CONFIG).write_text(text.replace(f"{stage}/", ""))


@contextlib.contextmanager
def _quiet(logger: str):
    """onnxruntime's tools log progress at INFO on their own handlers."""
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)

"""The export job: source model -> ONNX (+ OpenVINO IR) in a staging folder, each artifact verified
against the source on the same inputs, then OUT/manifest.json and an atomic rename into place."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeopt.atomic import output_dir
from edgeopt.errors import UnavailableError, UsageError, first_line
from edgeopt.export.options import ExportOptions
from edgeopt.export.verify import verify_artifact
from edgeopt.manifest import ArtifactRecord, Manifest, sha256_file
from edgeopt.models.base import LoadedModel
from edgeopt.backends.base import dist_version

ENV_PACKAGES = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "transformers", "tensorrt")


@dataclass
class ExportResult:
    out: Path
    manifest: Manifest  # as written to OUT/manifest.json
    verified: bool  # every artifact matches the source within its tolerance
    int8_passed: bool | None = None  # an INT8 artifact was kept; None: no INT8 asked for
    failure: str | None = None  # why the export's gate failed (the CLI exits 1 with it); None: it passed

    @property
    def passed(self) -> bool:
        return self.failure is None


def source_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def environment() -> dict:
    from edgeopt.backends.tensorrt import tensorrt_version

    found = {k: dist_version(k) for k in ENV_PACKAGES}
    found["tensorrt"] = tensorrt_version()
    return {k: v for k, v in found.items() if v}


def _check_targets(opts: ExportOptions):
    from edgeopt.backends import get_runtime

    for target in opts.targets:
        runtime = {"onnx": "onnxruntime", "mobile": "onnxruntime"}.get(target, target)
        avail = get_runtime(runtime).availability()
        if not avail.ok:
            raise UnavailableError(f"--to {target}: {runtime} unavailable ({avail.reason}); {avail.hint}")


def _add_openvino(model: LoadedModel, onnx_path: Path, stage: Path, artifacts: list, feeds, refs,
                  opts: ExportOptions, log, not_built: list) -> None:
    """FP32 (and FP16) IR: through the PyTorch frontend for transformers (fused attention), from
    model.onnx for the rest and whenever the frontend's IR fails to convert or to verify."""
    from edgeopt.export.openvino_ir import (
        TORCH_FRONTEND_FAMILIES,
        export_openvino,
        from_torch,
    )

    converted = None
    if model.module is not None and model.family in TORCH_FRONTEND_FAMILIES:
        log("converting to OpenVINO IR with the PyTorch frontend")
        converted = from_torch(model)
    for precision in ("fp32", "fp16") if opts.fp16 else ("fp32",):
        rel = "openvino/model.xml" if precision == "fp32" else "openvino/model.fp16.xml"
        while True:
            log(f"converting to OpenVINO IR ({precision})")
            try:
                how = export_openvino(onnx_path, stage / rel, fp16=precision == "fp16",
                                      converted=None if converted is None else converted.clone())
            except Exception as e:  # noqa: BLE001 - OpenVINO cannot convert this graph (an op it lacks)
                if converted is not None:
                    converted = None
                    continue
                how = None
                failed_op = re.findall(r"Conversion (?:is )?failed for:?\s*([^\n]+)", str(e))
                why = f"no conversion for {failed_op[-1].strip()}" if failed_op else first_line(e, 200)
                not_built.append({"path": rel, "error": f"OpenVINO could not convert model.onnx ({why})"})
                shutil.rmtree(stage / "openvino", ignore_errors=True)
                break
            log(f"verifying {rel} with openvino")
            verification = verify_artifact(stage / rel, "openvino", "openvino", precision, feeds, refs, opts)
            if verification.get("passed") or converted is None:
                break
            log("the PyTorch frontend's IR did not verify; converting model.onnx instead")
            converted = None
        if how is None:
            return
        artifacts.append(ArtifactRecord(rel, "openvino", precision, ["openvino"], verification=verification,
                                        extra={"converter": how}))


def _add_buckets(model: LoadedModel, stage: Path, artifacts: list, buckets, opts: ExportOptions, log) -> None:
    """Sequence-length buckets for each verified FP32 / FP16 IR (INT8 IRs get theirs from the gate)."""
    from edgeopt.export import bucket_checks as shape_buckets

    for record in artifacts:
        if record.format == "openvino" and record.precision != "int8" and record.verification.get("passed"):
            log(f"checking static shapes for {record.path}")
            shape_buckets.apply(stage, record, shape_buckets.check_against_source(
                stage / record.path, record.precision, buckets, model, opts.threads), log)


def _add_onnx(model: LoadedModel, onnx_path: Path, feeds, refs, opts: ExportOptions, log) -> ArtifactRecord:
    """model.onnx (exported, or copied from an ONNX source), verified with onnxruntime."""
    if model.onnx_path is not None:
        shutil.copyfile(model.onnx_path, onnx_path)
        how = {"exporter": "copied"}
    else:
        log("exporting to ONNX")
        from edgeopt.export.onnx import export_onnx

        how = export_onnx(model, onnx_path, exporter=opts.exporter)
    log("verifying model.onnx with onnxruntime")
    return ArtifactRecord("model.onnx", "onnx", "fp32", ["onnxruntime", "openvino", "tensorrt"],
                          verification=verify_artifact(onnx_path, "onnxruntime", "onnx", "fp32", feeds, refs, opts),
                          extra=how)


def _write_manifest(model: LoadedModel, stage: Path, outputs, artifacts: list, int8: dict | None,
                    not_built: list[dict]) -> Manifest:
    """The tokenizer (text models) and OUT/manifest.json, with each artifact's digest."""
    preprocessing = {}
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(stage / "tokenizer"))
        preprocessing = {"tokenizer": "tokenizer/", "max_length": model.max_length}
    if model.metadata.get("image"):  # size, resize rule, mean / std (models/hf_vision.py)
        preprocessing["image"] = {k: v for k, v in model.metadata["image"].items() if k != "source"}
    if model.metadata.get("class_names"):
        preprocessing["class_names"] = model.metadata["class_names"]
    manifest = Manifest(model={"name": model.name, "source": str(model.source), "family": model.family,
                               "sha256": source_digest(model.source)},
                        inputs=list(model.io.inputs), outputs=outputs, artifacts=artifacts,
                        preprocessing=preprocessing, environment=environment(),
                        task=model.metadata.get("task"), int8=int8, not_built=not_built)
    manifest.write(stage)
    return manifest


def export_model(model: LoadedModel, out: str | Path, opts: ExportOptions, *,
                 log: Callable[[str], None] = lambda msg: None) -> ExportResult:
    _check_targets(opts)
    int8_data = None
    if opts.int8 is not None:  # read and check the data before anything is written
        from edgeopt.export.int8_artifacts import load_int8_data

        log("reading calibration data")
        int8_data = load_int8_data(model, opts)
    buckets = None
    if "openvino" in opts.targets:
        from edgeopt.export.bucket_checks import plan

        buckets = plan(model, opts.shape_buckets)  # a bad --shape-buckets fails before anything is written
    if opts.mobile_shapes:
        from edgeopt.export.mobile import check_axes

        check_axes(opts.mobile_shapes, model.io.inputs)
    feeds = model.sample_feeds()
    if not feeds:
        raise UsageError(f"{model.name}: no sample inputs to verify with; pass --input")
    log("running the source model on sample inputs")
    refs = [model.reference(f) for f in feeds]
    with output_dir(out) as stage:
        onnx_path = stage / "model.onnx"
        artifacts, not_built = [_add_onnx(model, onnx_path, feeds, refs, opts, log)], []
        how = artifacts[0].extra
        if "openvino" in opts.targets:
            _add_openvino(model, onnx_path, stage, artifacts, feeds, refs, opts, log, not_built)
        from edgeopt.export.onnx import output_specs

        outputs = output_specs(onnx_path, model)
        int8 = None
        if int8_data is not None:
            from edgeopt.export.int8_artifacts import add_int8_artifacts

            # a transformer traced with eager attention is what onnxruntime's optimizer fuses (ort_fused.py)
            int8 = add_int8_artifacts(model, stage, artifacts, int8_data, opts, log, feeds=feeds, refs=refs,
                                      buckets=buckets, eager_onnx=onnx_path if how.get("attention") == "eager" else None)
        if buckets is not None:  # after INT8: an IR made from model.xml must not inherit its buckets
            _add_buckets(model, stage, artifacts, buckets, opts, log)
        if "mobile" in opts.targets:  # .ort files of the ONNX artifacts kept, FP32 and INT8
            from edgeopt.export.mobile import add_mobile_artifacts

            add_mobile_artifacts(model, stage, artifacts, feeds, refs, opts, log, not_built)
        if "tensorrt" in opts.targets:  # availability was checked up front: this runs on GPU machines only
            from edgeopt.export.tensorrt import add_tensorrt_artifacts

            add_tensorrt_artifacts(stage, artifacts, model, feeds, refs,
                                   int8_data.calib.samples if int8_data else None, log)
        manifest = _write_manifest(model, stage, outputs, artifacts, None if int8 is None else int8.report,
                                   not_built)
    verified = all(a.verification.get("passed") for a in artifacts)
    failure = None if verified else "an artifact does not match the source model within tolerance (see the table)"
    if failure is None and not_built:
        hint = " (--to onnx skips OpenVINO)" if not_built[0]["path"].startswith("openvino") else ""
        failure = f"{not_built[0]['error']}; the other artifacts are written{hint}"
    if failure is None and int8 is not None:
        failure = int8.failure
    return ExportResult(Path(out), manifest, verified and not not_built,
                        int8_passed=None if int8 is None else int8.passed, failure=failure)

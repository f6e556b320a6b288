"""``edgeopt.export(model, out, ...)``: the export command as one Python call (the CLI calls it too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from edgeopt.export.pipeline import ExportResult
    from edgeopt.models.base import LoadedModel
    from edgeopt.spec import TensorSpec


def default_out(model: str | os.PathLike) -> Path:
    """MODEL's name + '-edgeopt', in the current folder."""
    return Path(f"{Path(model).stem or Path(model).name}-edgeopt")


def export(model: "str | os.PathLike | LoadedModel", out: str | os.PathLike | None = None, *,
           to: Sequence[str] = ("onnx", "openvino"), fp16: bool = False, int8: bool = False,
           int8_mode: str = "auto", calib: str | os.PathLike | None = None,
           eval_data: str | os.PathLike | None = None, metric: str | None = None, max_drop: float | None = None,
           min_cosine: float = 0.98, calib_method: str = "minmax", speed_check: bool = True,
           calib_size: int = 256, eval_size: int = 500, eval_batch: int | None = None, exporter: str = "auto",
           atol: float | None = None, rtol: float | None = None, threads: int | None = None,
           shape_buckets: str = "auto", arch: str | None = None, arch_kwargs: dict | str | None = None,
           trust_pickle: bool = False, inputs: "Sequence[str | TensorSpec]" = (),
           reference: "str | os.PathLike | LoadedModel | None" = None, mobile_shapes: "str | dict | None" = None,
           log: Callable[[str], None] = lambda m: None) -> "ExportResult":
    """Export ``model`` (a path, as ``edgeopt export`` takes, or a model from
    ``edgeopt.models.load_model``) to ``out`` (default: the model's name + '-edgeopt'), verify every
    artifact against it, and write OUT/manifest.json; with ``int8``, add accuracy-gated INT8
    artifacts. The keywords are the CLI's flags (``eval_data`` is ``--eval``, ``to`` ``--to``).

    Returns the result, gate failures included (``result.passed``, ``result.failure``); raises
    ``edgeopt.errors.UsageError`` on bad input, before anything is written.

    ``reference`` (with ``int8``): the INT8 gate scores against this model, e.g. the teacher of a
    distilled student, instead of the FP32 export; the drop is then how much further INT8 falls
    from it than FP32 does, and the manifest's quality says ``"vs"``: the reference's path."""
    from edgeopt.errors import UsageError
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.optimize.quantize.config import Int8Config

    int8_cfg = None
    if int8:
        int8_cfg = Int8Config(mode=int8_mode, calib_method=calib_method, metric=metric, max_drop=max_drop,
                              min_cosine=min_cosine, calib_size=calib_size, eval_size=eval_size,
                              eval_batch=eval_batch, speed_check=speed_check)
    elif calib or eval_data or metric or max_drop is not None or eval_batch is not None or reference is not None:
        raise UsageError("--calib/--eval/--eval-batch/--metric/--max-drop/--reference apply to --int8; add --int8")
    names = ",".join([to] if isinstance(to, str) else to)  # "onnx,openvino" or ("onnx", "openvino")
    targets = tuple(t.strip() for t in names.split(",") if t.strip())
    opts = ExportOptions(targets=targets, fp16=fp16, exporter=exporter, threads=threads, int8=int8_cfg,
                         calib=None if calib is None else str(calib),
                         eval_data=None if eval_data is None else str(eval_data), atol=atol, rtol=rtol,
                         shape_buckets=shape_buckets, mobile_shapes=_mobile_shapes(mobile_shapes, targets))
    if reference is not None:
        from edgeopt.models import load_model

        opts.reference = reference if not isinstance(reference, (str, os.PathLike)) else load_model(reference)
        if opts.reference.reference is None:
            raise UsageError(f"--reference {reference}: edgeopt cannot run this model to score against it; "
                             "give a Hugging Face / sentence-transformers folder, a .pt2 or an .onnx file")
    loaded = model if not isinstance(model, (str, os.PathLike)) else _load(model, arch, arch_kwargs, trust_pickle,
                                                                            inputs, calib or eval_data)
    log(f"loaded {loaded.name} ({loaded.family})")
    return export_model(loaded, out if out is not None else default_out(loaded.source), opts, log=log)


def _mobile_shapes(value: "str | dict | None", targets: tuple[str, ...]) -> dict[str, int] | None:
    from edgeopt.errors import UsageError
    from edgeopt.export.mobile import parse_mobile_shapes

    if value and "mobile" not in targets:
        raise UsageError("--mobile-shapes applies to --to mobile; add mobile to --to")
    return parse_mobile_shapes(value) if isinstance(value, str) or value is None else dict(value)


def _load(path, arch, arch_kwargs, trust_pickle, inputs, rows=None) -> "LoadedModel":
    from edgeopt.models import load_model
    from edgeopt.models.arch import parse_kwargs
    from edgeopt.spec import parse_input

    specs = [parse_input(s) if isinstance(s, str) else s for s in inputs] or None
    kwargs = parse_kwargs(arch_kwargs) if isinstance(arch_kwargs, str) or arch_kwargs is None else arch_kwargs
    return load_model(path, arch=arch, arch_kwargs=kwargs, trust_pickle=trust_pickle, inputs=specs, rows=rows)

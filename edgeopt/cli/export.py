"""`edgeopt export MODEL`: verified ONNX / OpenVINO / TensorRT artifacts, optional gated INT8,
and OUT/manifest.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json, model_options


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output folder (default: MODEL name + '-edgeopt').")
@click.option("--to", "to", default="onnx,openvino", show_default=True,
              help="Comma-separated targets: onnx, openvino, tensorrt, mobile (ORT-format files for ONNX Runtime Mobile).")
@click.option("--fp16", is_flag=True, help="Also write OpenVINO IR with FP16-compressed weights.")
@click.option("--int8", is_flag=True, help="Add accuracy-gated INT8 artifacts (model.int8.onnx, openvino/model.int8.xml).")
@click.option("--int8-mode", type=click.Choice(["auto", "static", "dynamic", "blockwise"]), default="auto",
              show_default=True, help="static QDQ, dynamic (blockwise when it fails the gate), blockwise (onnxruntime "
              "MatMulNBits: 8-bit weights and activations per block, closest to FP32; faster than FP32 on a CPU with "
              "VNNI, not on AVX2 only), or auto: build static and dynamic, blockwise when both fail the gate, and keep "
              "the fastest that passes.")
@click.option("--calib", metavar="DATA", help="Calibration data (.npz, .txt, .jsonl, image folder, .csv, module:fn). "
              "Text models default to edgeopt's built-in product titles.")
@click.option("--eval", "eval_data", metavar="DATA", help="Evaluation data for the gate (default: held out from --calib).")
@click.option("--metric", help="Gate metric: cosine, nn (nearest-neighbour agreement on the eval set), top1, mse, "
              "auc, logloss (click models: one column, 0/1 labels), ndcg@K, recall@K (default: by model kind; "
              "auc for one-column outputs with 0/1 labels).")
@click.option("--max-drop", type=float, help="Largest allowed quality drop in the metric's units "
              "(cosine: 1 - mean cosine, default 0.005; nn: 1 - agreement, default 0.03; top1: 0.005 = 0.5 points).")
@click.option("--min-cosine", type=float, default=0.98, show_default=True,
              help="With --metric cosine: the worst sample's cosine must also stay above this.")
@click.option("--reference", metavar="MODEL", help="Gate INT8 against this model (e.g. the teacher of a distilled "
              "student: a Hugging Face / sentence-transformers folder, .pt2 or .onnx) instead of the FP32 export; the "
              "drop is how much further INT8 falls from it than FP32 does.")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="Activation range calibration for static INT8.")
@click.option("--speed-check/--no-speed-check", default=True, show_default=True,
              help="Time each INT8 artifact against FP32 on this machine and keep it only at <= 0.95x FP32's latency. "
              "--no-speed-check keeps INT8 that passes the gate whatever its speed here (e.g. the devices have "
              "VNNI and this machine has not).")
@click.option("--calib-size", type=click.IntRange(1), default=256, show_default=True, help="Calibration samples.")
@click.option("--eval-size", type=click.IntRange(1), default=500, show_default=True, help="Evaluation samples.")
@click.option("--eval-batch", type=click.IntRange(1), help="Samples per call when the gate scores INT8 [default: "
              "1 for text, as a store serves a query; 32 otherwise]. Dynamic INT8 quantizes a call's inputs "
              "together, so gate on the batch size you serve.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="torch.onnx exporter; auto tries the best fit first and falls back to the other.")
@click.option("--atol", type=float, help="Verification: absolute tolerance for every artifact "
              "[default: ONNX 1e-4, OpenVINO FP32 1e-3, FP16 2e-2].")
@click.option("--rtol", type=float, help="Verification: tolerance relative to |source output| [default: as --atol].")
@click.option("--threads", type=click.IntRange(1), help="Threads for verification sessions.")
@click.option("--shape-buckets", default="auto", show_default=True, metavar="auto|off|8,16,32",
              help="OpenVINO IRs of text models: sequence lengths that also run as static shapes, inputs padded "
              "up to the next one (checked against the source / the INT8 gate first). auto: powers of two up to "
              "the model's maximum length, kept where the check reached them.")
@click.option("--mobile-shapes", metavar="AXIS=N,...", help="--to mobile: sizes of the dynamic axes in the "
              "static-shape .ort (e.g. batch=1,sequence=128) [default: 1 for the first axis, else the sample's].")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print each step with the seconds elapsed (on stderr).")
def command(model, out, to, fp16, int8, int8_mode, calib, eval_data, metric, max_drop, min_cosine, reference,
            calib_method, speed_check, calib_size, eval_size, eval_batch, exporter, atol, rtol, threads, shape_buckets, mobile_shapes,
            arch, arch_kwargs, trust_pickle, inputs, as_json, verbose):
    """Export MODEL, verify every artifact against it, and write OUT/manifest.json.

    With --int8, calibrate, measure the INT8 model against the FP32 source on held-out data and
    return the most sensitive layers to FP32 until the drop is within --max-drop.

    Exit 0 when all artifacts match the source (and INT8 passes its gate), 1 when one does not
    or cannot be built (FP32 artifacts are kept; failing artifacts are marked in the manifest), 2 on
    bad input, 3 on a bug (a log file is named).
    """
    from edgeopt.cli.printing import print_artifacts, print_int8_notes
    from edgeopt.errors import GateError
    from edgeopt.export.api import default_out, export

    con = console()
    t0 = time.perf_counter()
    out = out or default_out(model)
    with con.status("loading model") as status:
        def log(msg: str) -> None:
            if verbose:
                con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)
            status.update(msg)

        result = export(model, out, to=to, fp16=fp16, int8=int8, int8_mode=int8_mode, calib=calib,
                        eval_data=eval_data, metric=metric, max_drop=max_drop, min_cosine=min_cosine,
                        calib_method=calib_method, speed_check=speed_check, calib_size=calib_size,
                        eval_size=eval_size, eval_batch=eval_batch, exporter=exporter, atol=atol, rtol=rtol,
                        threads=threads, shape_buckets=shape_buckets, mobile_shapes=mobile_shapes, reference=reference, arch=arch, arch_kwargs=arch_kwargs,
                        trust_pickle=trust_pickle, inputs=inputs, log=log)
    if as_json:
        echo_json(json.dumps(result.manifest.to_json(), indent=2))
    else:
        print_artifacts(con, result.manifest.artifacts, title=f"{result.manifest.name} -> {out}")
        print_int8_notes(con, result.manifest.int8)
        for item in result.manifest.not_built:
            con.print(f"[red]not built:[/] {item['path']}: {item['error']}", highlight=False)
    if result.failure:
        raise GateError(result.failure)

"""`edgeopt export MODEL`: verified ONNX / OpenVINO / TensorRT artifacts, optional gated INT8,
and OUT/manifest.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgeopt.cli.options import console, load_from_options, model_options


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output folder (default: MODEL name + '-edgeopt').")
@click.option("--to", "targets", default="onnx,openvino", show_default=True,
              help="Comma-separated targets: onnx, openvino, tensorrt.")
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
              "ndcg@K, recall@K (default: by model kind).")
@click.option("--max-drop", type=float, help="Largest allowed quality drop in the metric's units "
              "(cosine: 1 - mean cosine, default 0.005; nn: 1 - agreement, default 0.03; top1: 0.005 = 0.5 points).")
@click.option("--min-cosine", type=float, default=0.98, show_default=True,
              help="With --metric cosine: the worst sample's cosine must also stay above this.")
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
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Print each step with the seconds elapsed (on stderr).")
def command(model, out, targets, fp16, int8, int8_mode, calib, eval_data, metric, max_drop, min_cosine, calib_method,
            speed_check, calib_size, eval_size, eval_batch, exporter, atol, rtol, threads, shape_buckets, arch,
            arch_kwargs, trust_pickle, inputs, as_json, verbose):
    """Export MODEL, verify every artifact against it, and write OUT/manifest.json.

    With --int8, calibrate, measure the INT8 model against the FP32 source on held-out data and
    return the most sensitive layers to FP32 until the drop is within --max-drop.

    Exit 0 when all artifacts match the source (and INT8 passes its gate), 1 when one does not
    or cannot be built (FP32 artifacts are kept; failing artifacts are marked in the manifest), 2 on
    bad input, 3 on a bug (a log file is named).
    """
    from edgeopt.errors import GateError
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.optimize.quantize.config import Int8Config

    int8_cfg = None
    if int8:
        int8_cfg = Int8Config(mode=int8_mode, calib_method=calib_method, metric=metric, max_drop=max_drop,
                              min_cosine=min_cosine, calib_size=calib_size, eval_size=eval_size,
                              eval_batch=eval_batch, speed_check=speed_check)
    elif calib or eval_data or metric or max_drop is not None or eval_batch is not None:
        raise click.UsageError("--calib/--eval/--eval-batch/--metric/--max-drop apply to --int8; add --int8")
    opts = ExportOptions(targets=tuple(t.strip() for t in targets.split(",") if t.strip()), fp16=fp16,
                         exporter=exporter, threads=threads, int8=int8_cfg, calib=calib, eval_data=eval_data,
                         atol=atol, rtol=rtol, shape_buckets=shape_buckets)
    con = console()
    t0 = time.perf_counter()
    with con.status("loading model") as status:
        def log(msg: str) -> None:
            if verbose:
                con.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/dim]  {msg}", highlight=False)
            status.update(msg)

        loaded = load_from_options(model, arch, arch_kwargs, trust_pickle, inputs)
        log(f"loaded {loaded.name} ({loaded.family})")
        out = out or Path(f"{Path(model).stem or Path(model).name}-edgeopt")
        result = export_model(loaded, out, opts, log=log)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
    else:
        print_artifacts(con, result.manifest, title=f"{loaded.name} -> {out}")
        int8 = result.manifest.get("int8") or {}
        for warning in int8.get("calibration", {}).get("warnings", []):
            con.print(f"[yellow]warning:[/] {warning}")
        for note in int8.get("notes", []):
            con.print(f"note: {note}")
    for item in result.manifest.get("not_built", []):
        con.print(f"[red]not built:[/] {item['path']}: {item['error']}", highlight=False)
    if not result.passed:
        if result.manifest.get("not_built"):
            raise GateError(f"{result.manifest['not_built'][0]['error']}; the other artifacts are written "
                            f"(--to onnx skips OpenVINO)")
        raise GateError("an artifact does not match the source model within tolerance (see the table)")
    if result.int8_passed is False:
        int8 = result.manifest["int8"]
        slow = [c["rejected"] for c in int8["candidates"] if c.get("rejected") and not c.get("probe")]
        if slow:
            raise GateError(f"INT8 that meets --max-drop {int8['max_drop']} on {int8['metric']} is {slow[0]}; "
                            "FP32 artifacts kept: FP32 is the faster model here (see manifest.json 'int8'; "
                            "--no-speed-check keeps INT8 anyway)")
        raise GateError(f"INT8 could not meet --max-drop {int8['max_drop']} on {int8['metric']}; "
                        "FP32 artifacts kept (see manifest.json 'int8' for each candidate)")


def print_artifacts(con, manifest: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("artifact", "prec", "size", "max abs", "cos min", "quality", "check"):
        table.add_column(col, justify="right" if col not in ("artifact", "check", "quality") else "left",
                         no_wrap=col == "artifact")
    for a in manifest["artifacts"]:
        v = a.get("verification", {})
        ok = "[green]pass[/]" if v.get("passed") else f"[red]FAIL[/] {v.get('error', '')}"
        q = a.get("quality")
        quality = "-"
        if q:
            quality = f"{q['metric']} {q['value']:.4f}" + (f" (min {q['min']:.3f})" if "min" in q else "")
            if a.get("fallback_nodes"):
                quality += f", {len(a['fallback_nodes'])} FP32"
        table.add_row(a["path"], a["precision"], f"{a['bytes'] / 1e6:.1f} MB",
                      f"{v['max_abs_diff']:.1e}" if "max_abs_diff" in v else "-",
                      f"{v['cosine_min']:.5f}" if "cosine_min" in v else "-", quality, ok)
    con.print(table)
    for a in manifest["artifacts"]:
        b = a.get("shape_buckets") or {}
        if not b.get("checked"):
            continue
        dropped = [n for n, r in b["checked"].items() if not r["passed"]]
        if b.get("enabled"):
            q = b.get("quality")  # INT8: the gate's metric; FP32 / FP16: the largest difference to the source
            how = (f"{q['metric']} {q['value']:.4f}" if q else
                   f"max abs {max(r['max_abs_diff'] for r in b['checked'].values() if r['passed']):.1e}")
            line = f"{a['path']}: static shapes for {', '.join(map(str, b['lengths']))} tokens ({how})"
        else:
            line = f"{a['path']}: no static shapes"
        if dropped:
            line += f"; {', '.join(dropped)} dropped: the padded static shape did not match"
        con.print(line, highlight=False)

"""`edgeopt bench ARTIFACT`: cold start, warm latency, throughput, memory; a CI regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, echo_json, model_options


@click.command()
@click.argument("artifact")  # a path, or http://HOST:PORT/v2/models/NAME (a served model)
@click.option("--runtime", "runtimes", help="Comma-separated runtimes: onnxruntime, openvino, tensorrt, torch "
              "[default: each artifact's own; torch for a torch model].")
@click.option("--target", "targets", default="cpu", show_default=True,
              help="Comma-separated target profiles: cpu, mobile (1 core, 1 thread, memory cap), gpu, or your own.")
@click.option("--profiles", "profiles_file", type=click.Path(path_type=Path), help="JSON/YAML file of extra target profiles.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seq-len", type=int, default=64, show_default=True, help="Length of token-id inputs.")
@click.option("--cold-runs", type=int, default=5, show_default=True, help="Fresh processes per artifact for cold start.")
@click.option("--repeats", type=int, default=5, show_default=True,
              help="Warm rounds: fresh processes per artifact, interleaved across artifacts.")
@click.option("--seconds", type=float, default=0.5, show_default=True, help="Measured seconds per batch size per round.")
@click.option("--warmup", type=float, default=0.2, show_default=True, help="Warm-up seconds before measuring.")
@click.option("--concurrency", default="1", show_default=True,
              help="Comma-separated parallel requests for throughput (OpenVINO: async infer requests).")
@click.option("--threads", type=int, help="Inference threads for profiles that do not fix them.")
@click.option("--cache/--no-cache", "cache_modes", default=True, show_default=True,
              help="Also measure cold start with OpenVINO CACHE_DIR / an ORT pre-optimized model (empty, then warm).")
@click.option("--drop-caches", is_flag=True, help="Evict the artifact's files from the page cache before each cold run.")
@click.option("--json", "json_out", metavar="FILE", help="Write the benchmark JSON to FILE ('-': stdout).")
@click.option("--pytest-benchmark", "pb_out", metavar="FILE", help="Also write pytest-benchmark-compatible JSON.")
@click.option("--html", "html_dir", metavar="DIR", help="Write DIR/report.html with PNG plots.")
@click.option("--baseline", type=click.Path(path_type=Path), help="A previous --json file to compare against.")
@click.option("--max-regression", type=float, help="Fail (exit 1) when a record is slower by more than PCT percent "
              "with confidence [default with --baseline: 10].", metavar="PCT")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Confidence level of the gate's interval.")
@click.option("--gate-metric", type=click.Choice(["cpu", "latency"]), default="cpu", show_default=True,
              help="What the gate compares per call: process CPU time (robust to other processes on the machine) "
                   "or wall-clock latency.")
@click.option("--normalize/--no-normalize", default=True, show_default=True,
              help="Divide latencies by the machine-speed reference measured in the same processes.")
@model_options
def command(artifact, runtimes, targets, profiles_file, batches, seq_len, cold_runs, repeats, seconds, warmup,
            concurrency, threads, cache_modes, drop_caches, json_out, pb_out, html_dir, baseline, max_regression,
            confidence, gate_metric, normalize, arch, arch_kwargs, trust_pickle, inputs):
    """Benchmark ARTIFACT: an .onnx, OpenVINO .xml, TensorRT .plan, an export folder (all artifacts of its
    manifest), a .edgepkg bundle, or a torch model (the eager baseline); or a served model,
    http://HOST:PORT/v2/models/NAME (`edgeopt serve`), beside the same artifact in process.

    Exit 0 when done (and no regression), 1 when a record regressed beyond --max-regression against
    --baseline or a measurement could not be taken, 2 on bad input, 3 on a bug (a log file is named).
    """
    from edgeopt.bench.api import bench
    from edgeopt.bench.records import pytest_benchmark_document
    from edgeopt.cli.printing import print_gate, print_records
    from edgeopt.errors import GateError

    from edgeopt.cli.stages import stage_log

    con = console()
    with con.status("benchmarking") as status:
        log = stage_log(con, False, stdout_free=json_out != "-", also=status.update)  # lines too in a CI log
        result = bench(artifact, runtimes=runtimes, targets=targets, profiles_file=profiles_file, batches=batches,
                       seq_len=seq_len, cold_runs=cold_runs, repeats=repeats, seconds=seconds, warmup=warmup,
                       concurrency=concurrency, threads=threads, cache_modes=cache_modes, drop_caches=drop_caches,
                       baseline=baseline, max_regression=max_regression, confidence=confidence,
                       gate_metric=gate_metric, normalize=normalize, arch=arch, arch_kwargs=arch_kwargs,
                       trust_pickle=trust_pickle, inputs=inputs, log=log)
    doc = result.document
    if json_out == "-":
        echo_json(json.dumps(doc, indent=2))
    elif json_out:
        Path(json_out).write_text(json.dumps(doc, indent=2) + "\n")
    if pb_out:
        Path(pb_out).write_text(json.dumps(pytest_benchmark_document(doc), indent=2) + "\n")
    if html_dir:
        from edgeopt.bench.report import write_html

        con.print(f"report: {write_html(doc, html_dir, doc.get('gate', {}).get('rows'))}")
    print_records(con, doc)
    con.print(f"dynamic non-batch axes (token ids of text models) ran at --seq-len {seq_len}; "
              "fixed axes at their exported size", highlight=False)
    if "gate" in doc:
        print_gate(con, doc["gate"])
    if result.failure:
        raise GateError(result.failure)

"""`edgeopt bench ARTIFACT`: cold start, warm latency, throughput, memory; a CI regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeopt.cli.options import console, model_options


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
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
@click.option("--max-regression", type=float, help="Fail (exit 1) when a record is slower by more than PCT %% "
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
    manifest), a .edgepkg bundle, or a torch model (the eager baseline).

    Exit 0 when done (and no regression), 1 when a record regressed beyond --max-regression against
    --baseline or a measurement could not be taken, 2 on bad input, 3 on a bug (a log file is named).
    """
    from edgeopt.bench.gate import compare, regressions
    from edgeopt.bench.records import failed_measurements, pytest_benchmark_document, read_document
    from edgeopt.bench.run import BenchOptions, run_bench
    from edgeopt.errors import GateError, UsageError

    def split(text):
        return [t.strip() for t in text.split(",") if t.strip()] if text else None

    if max_regression is not None and baseline is None:
        raise UsageError("--max-regression needs --baseline FILE")
    if max_regression is not None and max_regression < 0:
        raise UsageError(f"--max-regression must be >= 0, got {max_regression}")
    if not 0.5 <= confidence < 1:
        raise UsageError(f"--confidence must be in [0.5, 1), got {confidence}")
    if cold_runs < 1:
        raise UsageError(f"--cold-runs must be >= 1 (each is one fresh process), got {cold_runs}")
    base = read_document(baseline) if baseline is not None else None
    opts = BenchOptions(runtimes=split(runtimes), targets=split(targets) or [], batches=batches, seq_len=seq_len,
                        cold_runs=cold_runs, repeats=repeats, seconds=seconds, warmup=warmup,
                        concurrency=concurrency, threads=threads, cache_modes=cache_modes, drop_caches=drop_caches,
                        profiles_file=str(profiles_file) if profiles_file else None,
                        model_options={"arch": arch, "arch_kwargs": arch_kwargs, "trust_pickle": trust_pickle,
                                       "inputs": list(inputs)})
    con = console()
    with con.status("benchmarking") as status:
        doc = run_bench(artifact, opts, log=status.update)
    rows = []
    if base is not None:
        pct = 10.0 if max_regression is None else max_regression
        rows = compare(doc["records"], base["records"], max_regression=pct, confidence=confidence, normalize=normalize,
                       metric=gate_metric)
        doc["gate"] = {"baseline": str(baseline), "max_regression_pct": pct, "confidence": confidence,
                       "metric": gate_metric, "normalized": normalize,
                       "rows": [r.to_json() for r in rows], "passed": not regressions(rows)}
    failed = failed_measurements(doc["records"])
    if failed:
        doc["failed_measurements"] = failed
    if json_out == "-":
        click.echo(json.dumps(doc, indent=2))
    elif json_out:
        Path(json_out).write_text(json.dumps(doc, indent=2) + "\n")
    if pb_out:
        Path(pb_out).write_text(json.dumps(pytest_benchmark_document(doc), indent=2) + "\n")
    if html_dir:
        from edgeopt.bench.report import write_html

        path = write_html(doc, html_dir, doc.get("gate", {}).get("rows"))
        con.print(f"report: {path}")
    print_records(con, doc)
    if base is not None:
        print_gate(con, doc["gate"])
        bad = regressions(rows)
        if bad:
            raise GateError(f"{len(bad)} record(s) slower than {baseline} by more than {doc['gate']['max_regression_pct']:g}% "
                            "(the whole confidence interval beyond the threshold; see the table)")
    if failed:
        raise GateError(f"{len(failed)} measurement(s) could not be taken, so nothing was measured for them; "
                        f"first: {failed[0]}")


def _f(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def print_records(con, doc: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    warm = Table(title="warm: latency ms, throughput, peak RSS")
    for col in ("artifact", "runtime", "target", "batch", "p50", "p90", "p99", "items/s", "RSS MB"):
        warm.add_column(col, justify="left" if col in ("artifact", "runtime", "target") else "right")
    missing: dict[str, None] = {}
    for r in doc["records"]:
        lat = r.get("latency_ms") or {}
        if not lat:
            why = f"unavailable: {r['unavailable']}" if r.get("unavailable") else f"error: {r.get('error')}"
            missing[f"{r['artifact']} [{r['runtime']}] on {r['target']}: {why}"] = None
            continue
        warm.add_row(r["artifact"], r["runtime"], r["target"], str(r["batch"]), _f(lat["p50"]), _f(lat["p90"]),
                     _f(lat["p99"]), _f(r.get("throughput_ips"), ".1f"), _f(r.get("peak_rss_mb"), ".0f"))
    con.print(warm)
    for line in missing:
        con.print(f"[yellow]{escape(line)}[/]")
    first = doc["records"][0]["batch"] if doc["records"] else None
    colds = [r for r in doc["records"] if r["batch"] == first and r.get("cold_start")]
    if not colds:
        return
    runs = colds[0]["cold_start"]["runs"]
    cold = Table(title=f"cold start, ms (median of {runs} fresh processes; cache: empty / warm)")
    for col in ("artifact", "runtime", "target", "start", "import", "load", "1st", "total", "cache"):
        cold.add_column(col, justify="left" if col in ("artifact", "runtime", "target") else "right")
    for r in colds:
        c, cache = r["cold_start"], r.get("cold_start_cache") or {}
        cached = " / ".join(_f((cache.get(k) or {}).get("total_ms", {}).get("median"), ".0f")
                            for k in ("cold_cache", "warm_cache")) if cache else "-"
        cold.add_row(r["artifact"], r["runtime"], r["target"],
                     *(_f(c[k]["median"], ".0f") for k in ("startup_ms", "import_ms", "load_ms", "first_inference_ms",
                                                            "total_ms")), cached)
    con.print(cold)


def print_gate(con, gate: dict) -> None:
    from rich.table import Table

    table = Table(title=f"regression gate vs {gate['baseline']}: {gate['metric']} per call, max "
                        f"{gate['max_regression_pct']:g}%, {gate['confidence']:.0%} CI of current / baseline")
    for col in ("artifact", "runtime", "target", "batch", "base p50", "p50", "ratio", "CI", "status"):
        table.add_column(col)
    colors = {"regression": "red", "improved": "green", "ok": "green"}
    for g in gate["rows"]:
        st = g["status"]
        table.add_row(g["artifact"], g["runtime"], g["target"], str(g["batch"]), _f(g["baseline_p50_ms"]),
                      _f(g["current_p50_ms"]), _f(g["ratio"], ".3f"),
                      f"[{_f(g['ci_low'], '.3f')}, {_f(g['ci_high'], '.3f')}]" if g["ci_low"] else "-",
                      f"[{colors.get(st, 'yellow')}]{st}[/]" + (f" ({g['note']})" if st in ("skipped", "missing") else ""))
    con.print(table)

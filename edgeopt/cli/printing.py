"""Tables the commands print on stderr (rich), shared by export, demo and bench."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from edgeopt.manifest import ArtifactRecord


def fmt_num(v, spec: str = ".2f") -> str:
    """``v`` formatted, or "-" for a missing value."""
    return "-" if v is None else format(v, spec)


def print_artifacts(con, artifacts: Iterable[ArtifactRecord], title: str) -> None:
    from rich.table import Table

    artifacts = list(artifacts)
    table = Table(title=title)
    for col in ("artifact", "prec", "size", "max abs", "cos min", "quality", "check"):
        table.add_column(col, justify="right" if col not in ("artifact", "check", "quality") else "left",
                         no_wrap=col == "artifact")
    for a in artifacts:
        v = a.verification
        ok = "[green]pass[/]" if v.get("passed") else f"[red]FAIL[/] {v.get('error', '')}"
        q = a.quality
        quality = "-"
        if q:
            quality = f"{q['metric']} {q['value']:.4f}" + (f" (min {q['min']:.3f})" if "min" in q else "")
            if a.fallback_nodes:
                quality += f", {len(a.fallback_nodes)} FP32"
            if q.get("vs", "fp32 source") != "fp32 source":  # gated against another model (--reference)
                quality += f" vs {Path(q['vs']).name}: FP32 {q['reference']:.4f}"
        table.add_row(a.path, a.precision, f"{a.bytes / 1e6:.1f} MB",
                      f"{v['max_abs_diff']:.1e}" if "max_abs_diff" in v else "-",
                      f"{v['cosine_min']:.5f}" if "cosine_min" in v else "-", quality, ok)
    con.print(table)
    for a in artifacts:
        b = a.extra.get("shape_buckets") or {}
        if not b.get("checked"):
            continue
        dropped = [n for n, r in b["checked"].items() if not r["passed"]]
        if b.get("enabled"):
            q = b.get("quality")  # INT8: the gate's metric; FP32 / FP16: the largest difference to the source
            how = (f"{q['metric']} {q['value']:.4f}" if q else
                   f"max abs {max(r['max_abs_diff'] for r in b['checked'].values() if r['passed']):.1e}")
            line = f"{a.path}: static shapes for {', '.join(map(str, b['lengths']))} tokens ({how})"
        else:
            line = f"{a.path}: no static shapes"
        if dropped:
            line += f"; {', '.join(dropped)} dropped: the padded static shape did not match"
        con.print(line, highlight=False)


def print_int8_notes(con, int8: dict | None) -> None:
    """The INT8 step's calibration warnings and notes."""
    int8 = int8 or {}
    for warning in int8.get("calibration", {}).get("warnings", []):
        con.print(f"[yellow]warning:[/] {warning}")
    for note in int8.get("notes", []):
        con.print(f"note: {note}")


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
        warm.add_row(r["artifact"], r["runtime"], r["target"], str(r["batch"]), fmt_num(lat["p50"]),
                     fmt_num(lat["p90"]), fmt_num(lat["p99"]), fmt_num(r.get("throughput_ips"), ".1f"),
                     fmt_num(r.get("peak_rss_mb"), ".0f"))
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
        cached = " / ".join(fmt_num((cache.get(k) or {}).get("total_ms", {}).get("median"), ".0f")
                            for k in ("cold_cache", "warm_cache")) if cache else "-"
        cold.add_row(r["artifact"], r["runtime"], r["target"],
                     *(fmt_num(c[k]["median"], ".0f") for k in ("startup_ms", "import_ms", "load_ms",
                                                                "first_inference_ms", "total_ms")), cached)
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
        table.add_row(g["artifact"], g["runtime"], g["target"], str(g["batch"]), fmt_num(g["baseline_p50_ms"]),
                      fmt_num(g["current_p50_ms"]), fmt_num(g["ratio"], ".3f"),
                      f"[{fmt_num(g['ci_low'], '.3f')}, {fmt_num(g['ci_high'], '.3f')}]" if g["ci_low"] else "-",
                      f"[{colors.get(st, 'yellow')}]{st}[/]" + (f" ({g['note']})" if st in ("skipped", "missing")
                                                                else ""))
    con.print(table)

"""HTML report with PNG plots: latency distribution, throughput vs batch, stacked cold-start phases."""

from __future__ import annotations

import html
import json
from pathlib import Path

PHASE_LABELS = (("startup_ms", "process start"), ("import_ms", "import"), ("load_ms", "load (read + compile)"),
                ("first_inference_ms", "first inference"))


def _series(rec: dict) -> str:
    return f"{rec['artifact']} [{rec['runtime']}, {rec['target']}]"


def _plots(records: list[dict], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in records if r.get("latency_ms")]
    pngs = []
    if measured:
        smallest = min(r["batch"] for r in measured)
        rows = [r for r in measured if r["batch"] == smallest]
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8))
        data = [[x for rnd in r["samples"]["rounds"] for x in rnd["latency_ms"]] for r in rows]
        ax.boxplot(data, vert=False, showfliers=True, flierprops={"markersize": 2})
        ax.set_yticks(range(1, len(rows) + 1), [_series(r) for r in rows], fontsize=8)
        ax.set_xlabel(f"latency per call, ms (batch {smallest})")
        ax.set_title("warm latency distribution")
        fig.tight_layout()
        fig.savefig(out / "latency_distribution.png", dpi=110)
        plt.close(fig)
        pngs.append(("latency_distribution.png", "Warm latency distribution"))

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name in dict.fromkeys(_series(r) for r in measured):
            pts = sorted((r["batch"], r["throughput_ips"]) for r in measured if _series(r) == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("items / s (one request at a time)")
        ax.set_title("throughput vs batch")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "throughput_vs_batch.png", dpi=110)
        plt.close(fig)
        pngs.append(("throughput_vs_batch.png", "Throughput vs batch"))

    bars = []
    for r in records:
        if r["batch"] != records[0]["batch"] or not r.get("cold_start"):
            continue
        bars.append((_series(r), r["cold_start"]))
        cache = r.get("cold_start_cache") or {}
        for kind in ("cold_cache", "warm_cache"):
            if cache.get(kind):
                bars.append((f"{_series(r)} {kind.replace('_', ' ')}", cache[kind]))
    if bars:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.8))
        left = [0.0] * len(bars)
        for key, label in PHASE_LABELS:
            widths = [b[1][key]["median"] for b in bars]
            ax.barh(range(len(bars)), widths, left=left, label=label)
            left = [a + w for a, w in zip(left, widths)]
        ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("ms from process spawn to first output (medians)")
        ax.set_title("cold start phases")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "cold_start_phases.png", dpi=110)
        plt.close(fig)
        pngs.append(("cold_start_phases.png", "Cold start phases"))
    return pngs


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def write_html(doc: dict, out_dir: str | Path, gate_rows: list[dict] | None = None) -> Path:
    """Write OUT_DIR/report.html and its PNGs; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = _plots(doc["records"], out)
    rows = []
    for r in doc["records"]:
        lat, cold = r.get("latency_ms") or {}, r.get("cold_start") or {}
        state = r.get("unavailable") and f"unavailable: {r['unavailable']}" or r.get("error") or "ok"
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r["model"], r["artifact"], r["runtime"], r["target"], r["batch"],
            _fmt((cold.get("total_ms") or {}).get("median"), ".0f"), _fmt(lat.get("p50")), _fmt(lat.get("p90")),
            _fmt(lat.get("p99")), _fmt(r.get("throughput_ips"), ".1f"), _fmt(r.get("peak_rss_mb"), ".0f"),
            f"{r['model_bytes'] / 1e6:.1f}", state)) + "</tr>")
    head = ("model", "artifact", "runtime", "target", "batch", "cold start ms", "p50 ms", "p90 ms", "p99 ms",
            "items/s", "peak RSS MB", "MB", "status")
    gate = ""
    if gate_rows:
        gh = ("artifact", "runtime", "target", "batch", "baseline p50", "current p50", "ratio", "CI", "status")
        gate = "<h2>Regression gate</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in gh) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
                g["artifact"], g["runtime"], g["target"], g["batch"], _fmt(g["baseline_p50_ms"]),
                _fmt(g["current_p50_ms"]), _fmt(g["ratio"], ".3f"),
                f"[{_fmt(g['ci_low'], '.3f')}, {_fmt(g['ci_high'], '.3f')}]", g["status"])) + "</tr>"
            for g in gate_rows) + "</table>"
    imgs = "".join(f"<h2>{html.escape(t)}</h2><img src='{p}' alt='{html.escape(t)}'>" for p, t in pngs)
    env = html.escape(json.dumps(doc["environment"], indent=2))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeopt bench</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 6px;font-size:13px}}img{{max-width:100%}}</style></head><body>
<h1>edgeopt bench</h1><p>{html.escape(doc['created'])} &middot; {html.escape(doc['created_by'])}</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>{gate}{imgs}
<h2>Environment</h2><pre>{env}</pre></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path

"""OUT/report.json and a self-contained OUT/report.html (inline CSS and SVG, no network): per step
what it wrote and how long it took (or that it came from the cache), every variant's quality and
latency on the deploy runtime, a quality-versus-latency plot, and each gate's verdict."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def _seconds(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def _mb(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def _plot(variants: list[dict], metric: str) -> str:
    """Quality (y) against batch-1 latency (x), one labelled point per variant, as inline SVG."""
    pts = [v for v in variants if v.get("quality") is not None and v.get("latency_p50_ms")]
    if not pts:
        return "<p>No variant has both a quality and a latency.</p>"
    w, h, pad = 720, 360, 60
    xs, ys = [v["latency_p50_ms"] for v in pts], [v["quality"] for v in pts]
    x0, x1 = 0.0, max(xs) * 1.1
    y0, y1 = min(ys), max(ys)
    y0, y1 = (y0 - 0.05 * (y1 - y0 or 1), y1 + 0.05 * (y1 - y0 or 1))

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg id="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
             f'aria-label="quality versus latency">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">batch-1 latency p50 (ms), lower is better</text>',
             f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">'
             f'{html.escape(metric)}</text>']
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{xv:.2f}</text>')
        parts.append(f'<text x="{pad - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="11">{yv:.3f}</text>')
    for v in pts:
        color = "#888" if v["step"] == "teacher" else ("#1a7f37" if v["precision"] == "int8" else "#0969da")
        parts.append(f'<circle cx="{sx(v["latency_p50_ms"]):.1f}" cy="{sy(v["quality"]):.1f}" r="6" fill="{color}">'
                     f'<title>{html.escape(v["name"])}</title></circle>')
        parts.append(f'<text x="{sx(v["latency_p50_ms"]) + 9:.1f}" y="{sy(v["quality"]) - 7:.1f}" font-size="11">'
                     f'{html.escape(v["name"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}
th{background:#f6f8fa}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.hit{color:#8250df}code{background:#f6f8fa;padding:1px 4px}"""


def render_html(doc: dict) -> str:
    steps = [[html.escape(s["step"]), html.escape(s["kind"]), f'<span class="{s["cache"]}">{s["cache"]}</span>',
              _seconds(s["seconds"]), _seconds(s.get("built_seconds")), _mb(s.get("bytes")),
              _fmt(s.get("parameters")), f'<code>{html.escape(s.get("output") or "–")}</code>',
              f'<code>{html.escape(json.dumps(s["config"]))}</code>'] for s in doc["steps"]]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgeopt run: {html.escape(doc['recipe'])}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>edgeopt run: {html.escape(Path(doc['recipe']).name)}</h1>",
             f"<p>Model <code>{html.escape(doc['model'])}</code>; finished {html.escape(doc['finished'])}; "
             f"{html.escape(doc['created_by'])}; verdict: "
             f"<span id='verdict' class='{'pass' if doc['passed'] else 'fail'}'>"
             f"{'passed' if doc['passed'] else 'failed'}</span>.</p>"]
    if doc.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"]) + "</ul>")
    parts.append("<h2>Steps</h2>" + _table(["step", "kind", "cache", "seconds (this run)", "seconds (build)", "size",
                                            "parameters", "output", "config"], steps, "steps"))
    gates = doc.get("gates") or []
    if gates:
        rows = [[html.escape(g["name"]), _fmt(g.get("value")), html.escape(g["bound"]),
                 f'<span class="{"pass" if g["passed"] else "fail"}">{"pass" if g["passed"] else "fail"}</span>',
                 html.escape(g.get("detail", ""))] for g in gates]
        parts.append("<h2>Gates</h2>" + _table(["gate", "value", "bound", "verdict", "detail"], rows, "gates"))
    m = doc.get("measurements")
    if m:
        rows = [[html.escape(v["name"]), html.escape(v["precision"]), _mb(v["bytes"]), _fmt(v["quality"]),
                 _fmt(v["latency_p50_ms"], 3), _fmt(v["latency_ratios"].get("vs teacher FP32"), 3),
                 _fmt(v["latency_ratios"].get("vs teacher stock INT8"), 3)] for v in m["variants"]]
        parts.append(f"<h2>Every variant on {html.escape(m['runtime'])}</h2>"
                     f"<p>Quality: {html.escape(m['metric'])} on {html.escape(m['eval'])}. Latency: batch 1, "
                     f"{m['threads']} threads, {m['rounds']} interleaved rounds, each variant in its own process; "
                     "ratios are medians of per-round ratios.</p>"
                     + _table(["variant", "precision", "size", html.escape(m["metric"]), "p50 ms", "vs teacher FP32",
                               "vs teacher stock INT8"], rows, "variants")
                     + _plot(m["variants"], m["metric"]))
    q = doc.get("device_query")
    if q:
        rows = [[html.escape(r["query"]), "<br>".join(f"{html.escape(x['title'])} ({x['score']:.3f})"
                                                      for x in r["results"])] for r in q["queries"]]
        parts.append(f"<h2>The installed bundle, queried through the device runtime</h2><p><code>"
                     f"{html.escape(q['installed'])}</code>: version {html.escape(str(q.get('version')))}, "
                     f"{html.escape(str(q.get('artifact')))} on {html.escape(str(q.get('runtime')))}.</p>"
                     + _table(["query", "top held-out titles (cosine)"], rows, "device-query"))
    cold = doc.get("cold_start") or []
    if cold:
        rows = [[html.escape(c["artifact"]), html.escape(c["runtime"]), _fmt(c.get("import_ms"), 3),
                 _fmt(c.get("load_ms"), 3), _fmt(c.get("first_inference_ms"), 3), _fmt(c.get("total_ms"), 3)]
                for c in cold]
        parts.append("<h2>Cold start (bench step, medians over fresh processes)</h2>"
                     + _table(["artifact", "runtime", "import ms", "load ms", "first inference ms", "total ms"],
                              rows, "cold"))
    parts.append("</body></html>")
    return "\n".join(parts)


def cold_start_rows(bench_json: Path) -> list[dict]:
    doc = json.loads(bench_json.read_text())
    rows = []
    for r in doc.get("records", []):
        cold = r.get("cold_start") or {}
        if not cold or r.get("target") != "cpu":
            continue
        rows.append({"artifact": r["artifact"], "runtime": r["runtime"],
                     **{k: (cold.get(k) or {}).get("median") for k in ("import_ms", "load_ms", "first_inference_ms",
                                                                       "total_ms")}})
    return rows


def write(out: Path, doc: dict) -> tuple[Path, Path]:
    paths = []
    for name, text in (("report.json", json.dumps(doc, indent=2, default=str) + "\n"),
                       ("report.html", render_html(doc))):
        tmp = out / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        paths.append(out / name)
    return paths[0], paths[1]

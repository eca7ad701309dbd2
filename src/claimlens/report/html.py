"""Render a claims report (the JSON document written by the plugin) as one self-contained HTML page.

Reads only the JSON. No network fetches: CSS, the charts (inline SVG drawn here) and the few lines of
JavaScript that filter by outcome are all in the page. Every string from the document is escaped.
Hovering a point of a chart shows its epoch and value (SVG ``<title>``).
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from claimlens._io import atomic_write_text
from claimlens.core.verdicts import STATUSES
from claimlens.report.compare import FLIPS_SHOWN
from claimlens.report.document import OUTCOMES, load, summary, unjudged_messages
from claimlens.report.references import clearance

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


OVER_TRAINING = ("epoch", "step")  # x axes of series over a run (phase lines apply), not over a run set

def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if abs(v) >= 1e308:  # how claims.json stores ±infinity (JSON has none)
            return "∞" if v > 0 else "−∞"
        return f"{v:.4g}"
    return esc(v)


# ----------------------------------------------------------------------------- charts


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        a, b = math.floor(lo), math.ceil(hi)
        step = max(1, (b - a) // 5)
        return [float(e) for e in range(a, b + 1, step)]
    if hi == lo:
        return [lo]
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def svg_chart(lines: list[dict], *, log: bool, phases: dict[str, Any] | None = None,
              thresholds: list[float] | None = None, width: int = 560, height: int = 220, x_name: str = "epoch") -> str:
    """Lines ``{name, epochs, values}`` over epochs (or over a run set's axis ``x_name``); log scale if asked and
    every value is positive."""
    pts = [(e, v) for ln in lines for e, v in zip(ln["epochs"], ln["values"]) if isinstance(v, (int, float))]
    if not pts:
        return '<p class="muted">no values recorded</p>'
    log = log and all(v > 0 for _, v in pts) and all(t > 0 for t in (thresholds or []))
    tf = (lambda v: math.log10(v)) if log else (lambda v: v)
    xs = [e for e, _ in pts]
    ys = [tf(v) for _, v in pts] + [tf(t) for t in (thresholds or [])]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    if log:  # whole decades, so that every decade tick lies on or inside the frame
        y0, y1 = math.floor(y0), math.ceil(y1)
    left, right, top, bottom = 58, 10, 10, 28
    W, H = width - left - right, height - top - bottom

    def X(e):
        return left + (e - x0) / (x1 - x0) * W

    def Y(v):
        return top + (1 - (tf(v) - y0) / (y1 - y0)) * H

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    out.append(f'<rect x="{left}" y="{top}" width="{W}" height="{H}" class="frame"/>')
    for t in _ticks(y0, y1, log):
        y = top + (1 - (t - y0) / (y1 - y0)) * H
        label = f"1e{int(t)}" if log else f"{t:.3g}"
        out.append(f'<line x1="{left}" x2="{left + W}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">{esc(label)}</text>')
    for t in _ticks(x0, x1, False):
        x = X(t)
        tick = str(int(t)) if x_name in OVER_TRAINING else f"{t:.3g}"
        # a label centred on the frame's right edge would be cut by the picture's edge: end it there instead
        anchor = "end" if x + 3.5 * len(tick) > width else "middle"
        out.append(f'<text x="{x:.1f}" y="{height - 10}" class="tick" text-anchor="{anchor}">{tick}</text>')
    for name, epoch in (phases or {}).items():
        if isinstance(epoch, (int, float)) and x0 <= epoch <= x1:
            x = X(epoch)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + H}" class="phase"/>'
                       f'<text x="{x + 2:.1f}" y="{top + 10}" class="phase-label">{esc(name)}</text>')
    for t in thresholds or []:
        y = Y(t)
        out.append(f'<line x1="{left}" x2="{left + W}" y1="{y:.1f}" y2="{y:.1f}" class="threshold">'
                   f'<title>threshold {fmt(t)}</title></line>')
    for i, ln in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        coords = [(X(e), Y(v), e, v) for e, v in zip(ln["epochs"], ln["values"]) if isinstance(v, (int, float))
                  and (not log or v > 0)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        step = max(1, len(coords) // 150)
        for x, y, e, v in coords[::step]:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{color}">'
                       f'<title>{esc(ln["name"])}: {esc(x_name)} {fmt(e)}, {fmt(v)}</title></circle>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{COLORS[i % len(COLORS)]}"></i>{esc(ln["name"])}</span>'
                     for i, ln in enumerate(lines))
    scale = "log scale" if log else "linear scale"
    return (f'<figure>{"".join(out)}<figcaption>{legend} <span class="muted">({scale}; x: {esc(x_name)})</span>'
            f'</figcaption></figure>')


# ----------------------------------------------------------------------------- page


STATUS = {"passed": '<span class="ok">pass</span>', "failed": '<span class="bad">fail</span>',
          "not judged": '<span class="muted">not judged</span>', "recorded": ""}
KIND_TEXT = {
    "empirical": "empirical: can fail on a real model; a failure is a finding about the run",
    "identity": "identity: holds for every model by construction; a failure means the metric is computed wrong",
    "informational": "informational: reports numbers, no pass rule",
}


def _measurement_rows(measurements: list[dict], unit: str = "epoch") -> str:
    rows = []
    for m in measurements:
        status = m.get("status") or {True: "passed", False: "failed"}.get(m.get("passed"), "recorded")
        thr = f'{esc(m.get("op"))} {fmt(m.get("threshold"))}' if m.get("threshold") is not None else ""
        value = fmt(m.get("value")) if m.get("value") is not None else esc(m.get("reason") or "")
        cleared = clearance(m)
        margin = fmt(cleared) if cleared is not None else ""
        source = f"source: {fmt(m['source_value'])}" if m.get("source_value") is not None else ""
        rows.append(f'<tr class="{esc(status).replace(" ", "-")}"><td>{esc(m["name"])}'
                    f'{" · " + esc(m["label"]) if m.get("label") else ""}'
                    f'{" <span class=muted>(" + esc(m["detail"]) + ")</span>" if m.get("detail") else ""}</td>'
                    f"<td class=num>{value}</td><td class=num>{thr}</td><td class=num>{margin}</td>"
                    f"<td class=num>{source}</td>"
                    f"<td class=num>{esc(m.get('epoch')) if m.get('epoch') is not None else ''}</td>"
                    f"<td>{STATUS.get(status, esc(status))}</td></tr>")
    if not rows:
        return ""
    return ("<table class=meas><thead><tr><th>check</th><th>measured</th><th>threshold</th>"
            "<th title='how far the check cleared its threshold: ≥ 1 passed, < 1 failed (measured / threshold for "
            "≥ and >, threshold / measured for ≤ and <)'>margin</th><th title=\"the source's own value of the "
            "quantity\">"
            f"source</th><th>{esc(unit)}</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def kind_badge(kind: str | None) -> str:
    kind = kind or "empirical"
    return f'<span class="kind {esc(kind)}" title="{esc(KIND_TEXT.get(kind, kind))}">{esc(kind)}</span>'


def _record_card(r: dict) -> str:
    series = r.get("series", [])
    groups: dict[tuple, list] = defaultdict(list)
    for s in series:
        groups[(s.get("log_scale", False), s.get("x_name", "epoch"))].append(
            {"name": s["name"] + (f" [{s['label']}]" if s.get("label") else ""), "epochs": s["epochs"],
             "values": s["values"]})
    charts = "".join(svg_chart(lines, log=key[0], phases=r.get("phases") if key[1] in OVER_TRAINING else None, x_name=key[1])
                     for key, lines in groups.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.get("notes", []))
    message = f'<pre class="msg">{esc(r["message"])}</pre>' if r.get("message") else ""
    return (f'<article class="record {esc(r["outcome"])}"><header><span class="badge {esc(r["outcome"])}">'
            f'{esc(r["outcome"])}</span> <code>{esc(r["nodeid"])}</code> <span class="muted">{r.get("duration", 0):.2f} s'
            f'</span></header>{message}{charts}{_measurement_rows(r.get("measurements", []), r.get("x_unit", "epoch"))}'
            f'{"<ul class=notes>" + notes + "</ul>" if notes else ""}</article>')


STATUS_COLOUR = {"validated": "#2e7d32", "contradicted": "#6a1b9a", "unvalidated": "#8d6e63", "not_applicable": "#888"}


def _validation_block(v: Any) -> str:
    """A claim's validation (catalogue Revision 3): its status, scope and the artifacts its rule was checked on, with
    their verdicts and values. A report of schema ≤ 4 carries a sentence instead."""
    if not v:
        return ""
    if isinstance(v, str):
        return f'<p class=muted>rule checked against: {esc(v)}</p>'
    status = v.get("status", "")
    rows = []
    for a in v.get("artifacts") or []:
        verdict = str(a.get("verdict") or "")
        cls = "passed" if verdict == "passed" else "failed" if verdict == "failed" else "skipped"
        if a.get("run"):
            where = (f"ships with claimlens (--run {a['run']}); its key check"
                     + (f": {a['check']}" if a.get("check") else "") + ", at the default thresholds")
        elif a.get("shipped"):
            where = "printed by the source; judged against the threshold in force"
        else:
            where = "recorded, does not ship" + ("; judged against the threshold in force"
                                                 if a.get("threshold_name") else "")
        thr = f'{esc(a.get("op") or "")} {fmt(a.get("threshold"))}' if a.get("threshold") is not None else ""
        rows.append(f'<tr><td>{esc(a.get("name"))}{"" if a.get("about", True) else " <span class=muted>(not what the claim is about)</span>"}'
                    f'<br><span class=muted>{esc(where)}{(" · " + esc(a["note"])) if a.get("note") else ""}</span></td>'
                    f'<td><span class="badge {cls}">{esc(verdict or "–")}</span></td>'
                    f'<td class=num>{fmt(a.get("value")) if a.get("value") is not None else ""}</td><td class=num>{thr}</td>'
                    f'<td class=num>{fmt(a.get("margin")) if a.get("margin") is not None else ""}</td></tr>')
    table = ("<table class=artifacts><thead><tr><th>checked on</th><th>verdict</th><th>value</th><th>threshold</th>"
             "<th>margin</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else ""
    declared = (f' <span class=muted>(declared {esc(v["declared"])})</span>' if v.get("declared") else "")
    return (f'<div class=validation><span class="status" style="background:{STATUS_COLOUR.get(status, "#888")}" '
            f'title="{esc(STATUSES.get(status, ""))}">{esc(status.replace("_", " "))}</span>{declared} '
            f'<span class=muted>{esc(v.get("scope") or "")}</span>{table}</div>')



def strip_chart(ref: dict, width: int = 460, height: int = 58) -> str:
    """Where this run sits among the reference runs: the key check's value of each reference run (green passed, red
    failed, grey otherwise; its label on hover), the threshold (dashed), the source's value (blue diamond) and this
    run's value (black triangle), on one axis (logarithmic when the values are positive and span > 2 decades)."""
    key = ref.get("key") or {}
    pts = [(r["label"], r["value"], r.get("passed")) for r in ref.get("runs") or []
           if isinstance(r.get("value"), (int, float)) and not isinstance(r.get("value"), bool) and math.isfinite(r["value"])]
    mine = key.get("value") if isinstance(key.get("value"), (int, float)) and not isinstance(key.get("value"), bool) else None
    extra = [x for x in (mine, key.get("threshold"), key.get("source_value"))
             if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
    values = [v for _, v, _ in pts] + extra
    if not pts or not values:
        return ""
    log = min(values) > 0 and max(values) / min(values) > 100
    f = (lambda x: math.log10(x)) if log else (lambda x: x)
    lo, hi = f(min(values)), f(max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    x = lambda v: 10 + (f(v) - lo) / (hi - lo) * (width - 20)
    parts = [f'<line x1=10 x2={width - 10} y1=30 y2=30 stroke="#bbb"/>']
    thr = key.get("threshold")
    if isinstance(thr, (int, float)) and not isinstance(thr, bool) and math.isfinite(thr):
        parts.append(f'<line x1={x(thr):.1f} x2={x(thr):.1f} y1=12 y2=48 stroke="#555" stroke-dasharray="3,2">'
                     f'<title>threshold {esc(key.get("op") or "")} {fmt(thr)}</title></line>')
        anchor = "end" if x(thr) > width - 60 else "start" if x(thr) < 60 else "middle"
        parts.append(f'<text x={x(thr):.1f} y=9 font-size=9 fill="#555" text-anchor={anchor}>'
                     f'{esc(key.get("op") or "")} {fmt(thr)}</text>')
    for i, (label, v, ok) in enumerate(pts):
        colour = "#2e7d32" if ok else "#c62828" if ok is False else "#999"
        parts.append(f'<circle cx={x(v):.1f} cy={24 + (i % 3) * 6} r=4 fill="{colour}" fill-opacity=.75>'
                     f'<title>{esc(label)}: {fmt(v)}</title></circle>')
    src = key.get("source_value")
    if isinstance(src, (int, float)) and not isinstance(src, bool) and math.isfinite(src):
        cx = x(src)
        parts.append(f'<path d="M{cx:.1f},6 l5,5 l-5,5 l-5,-5 z" fill="#1565c0"><title>source: {fmt(src)}</title></path>')
    if mine is not None and math.isfinite(mine):
        cx = x(mine)
        parts.append(f'<path d="M{cx:.1f},44 l6,10 l-12,0 z" fill="#000"><title>this run: {fmt(mine)}</title></path>')
    axis = f'<text x=10 y={height + 10} font-size=10 fill="#777">{fmt(min(values))}</text>' \
           f'<text x={width - 10} y={height + 10} font-size=10 fill="#777" text-anchor=end>{fmt(max(values))}' \
           f'{" (log scale)" if log else ""}</text>'
    # the same values as text, so that a printout or screenshot says which dot is which run
    listed = "; ".join(f'{esc(label)} {fmt(v)}{"" if ok is None else " ✓" if ok else " ✗"}'
                       for label, v, ok in sorted(pts, key=lambda t: t[1]))
    return (f'<svg class=strip width={width} height={height + 14} role=img aria-label="reference runs">'
            f'{"".join(parts)}{axis}</svg>'
            f'<details class=refvalues><summary>the reference runs\' values</summary><p class=muted>{listed}</p></details>'
            '<p class=legend><span style="color:#2e7d32">●</span>/<span style="color:#c62828">●</span> reference runs '
            '(the key check passed / failed there, at the default thresholds) · ┆ threshold · '
            '<span style="color:#1565c0">◆</span> source · ▲ this run</p>')


def _reference_block(records: list[dict]) -> str:
    """The reference runs beside a run's verdict: the strip chart of the key check and the sentence on what the
    outcome means (from the record whose key check is tightest)."""
    refs = [r.get("reference") for r in records if isinstance(r.get("reference"), dict)]
    if not refs:
        return ""
    ref = next((x for x in refs if x.get("key")), refs[0])
    key = ref.get("key") or {}
    numeric = isinstance(key.get("value"), (int, float)) and not isinstance(key.get("value"), bool)
    with_value = len([r for r in ref.get("runs") or [] if isinstance(r.get("value"), (int, float))
                      and not isinstance(r.get("value"), bool)])
    head = (f'<p class=refkey>key check: <b>{esc(key.get("name"))}</b>{(" · " + esc(key["label"])) if key.get("label") else ""}'
            + (f' — this run {fmt(key.get("value"))}, threshold {esc(key.get("op") or "")} {fmt(key.get("threshold"))}'
               if numeric and key.get("threshold") is not None else f' — this run: {esc(key.get("status") or "")}')
            + (f', source {fmt(key["source_value"])}' if key.get("source_value") is not None else "")
            + (f'; {with_value} reference run{"s" * (with_value != 1)} measured it' if numeric and ref.get("runs") else "")
            + "</p>") if key else ""
    stale = "" if ref.get("current", True) or not ref.get("runs") else " <span class=muted>(stored for an earlier version of this rule)</span>"
    return (f'<div class=reference>{head}{strip_chart(ref) if key and numeric else ""}'
            f'<p class=sentence>{esc(ref.get("sentence") or "")}{stale}</p></div>')


def _split_unknown(run: dict) -> str:
    """The runs table's note on a run whose train/test split is unknown (its train/test claims were skipped)."""
    split = run.get("split") or {}
    if split.get("rule") != "unknown":
        return ""
    return (f'<br><span class="badge skipped">split unknown</span> {esc(split.get("reason", ""))}: the claims that '
            f"need train vs test were skipped")


def _members(run: dict) -> str:
    """A run set's members, one line each (their axis values)."""
    members = run.get("members") or []
    if not members:
        return ""
    items = "".join(f"<li>{esc(m.get('label'))}: " + ", ".join(f"{esc(k)} = {fmt(v)}" for k, v in
                                                             (m.get("values") or {}).items()) + "</li>" for m in members)
    return f"<details><summary>run set of {len(members)} runs</summary><ul>{items}</ul></details>"


def _per_checkpoint_card(records: list[dict]) -> str:
    """Many records of one claim on one run (one per checkpoint): one chart of each measurement over epochs."""
    counts = summary(records)
    worst = [r for r in records if r["outcome"] == "failed"]
    by_name: dict[str, dict] = defaultdict(lambda: {"epochs": [], "values": [], "threshold": None})
    for r in records:
        for m in r.get("measurements", []):
            if isinstance(m.get("value"), (int, float)) and m.get("epoch") is not None:
                d = by_name[m["name"]]
                d["epochs"].append(m["epoch"])
                d["values"].append(m["value"])
                d["threshold"] = m.get("threshold", d["threshold"])
    charts = "".join(svg_chart([{"name": name, "epochs": d["epochs"], "values": d["values"]}], log=False,
                               thresholds=[d["threshold"]] if d["threshold"] is not None else None)
                     for name, d in by_name.items() if d["threshold"] is not None)
    outcome = overall(counts)
    failing = ", ".join(str(r["parameters"].get("epoch")) for r in worst[:40])
    errors = [r for r in records if r["outcome"] == "error"]
    shown = worst or errors
    first = f'<pre class="msg">{esc(shown[0]["message"])}</pre>' if shown else ""
    return (f'<article class="record {outcome}"><header><span class="badge {outcome}">{outcome}</span> '
            f'per checkpoint: {counts["passed"]} passed, {counts["failed"]} failed, '
            f'{counts["error"]} not judged (error), {counts["skipped"]} skipped'
            f'</header>{first}{"<p>failing epochs: " + esc(failing) + ("…" if len(worst) > 40 else "") + "</p>" if worst else ""}'
            f'{charts}</article>')


def overall(counts: dict[str, int]) -> str:
    """One outcome for several records: failed if any failed, else error if any could not be judged, else passed
    if any passed, else skipped."""
    return next((o for o in ("failed", "error", "passed") if counts.get(o)), "skipped")


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px;color:#222}
h1{margin:.2em 0} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em} h3{margin:.3em 0}
.muted{color:#777} code{font-size:12px} .badge{display:inline-block;padding:1px 7px;border-radius:8px;color:#fff;font-size:12px}
.status{display:inline-block;padding:1px 7px;border-radius:3px;color:#fff;font-size:12px;text-transform:uppercase}
.validation{margin:6px 0} table.artifacts{margin-top:4px;font-size:13px} .reference{margin:4px 0 8px;padding:4px 8px;background:#f7f7f9;border-left:3px solid #bbc}
.reference p{margin:2px 0} svg.strip{display:block} .legend{font-size:11px;color:#777}
.badge.passed{background:#2e7d32}.badge.failed{background:#c62828}.badge.error{background:#e65100}.badge.skipped{background:#888}
.claim{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:12px 0}
.record{border-top:1px dashed #ddd;padding:6px 0} pre.msg{background:#fff4f4;padding:6px;white-space:pre-wrap;font-size:12px}
.record.skipped pre.msg{background:#f4f4f4} .record.passed pre.msg{background:#f3f9f3} .record.error pre.msg{background:#fff3e0}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:2px 6px;font-size:12px} td.num{text-align:right}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}
svg.chart{background:#fff} .frame{fill:none;stroke:#bbb} .grid{stroke:#eee} .tick{font-size:10px;fill:#666}
.phase{stroke:#555;stroke-dasharray:4 3} .phase-label{font-size:10px;fill:#555} .threshold{stroke:#c62828;stroke-dasharray:6 3}
figure{margin:6px 0} figcaption{font-size:12px} .key{margin-right:10px} .key i{display:inline-block;width:10px;height:10px;margin-right:3px}
.filters label{margin-right:12px} .matrix td{text-align:center}
.kind{font-size:11px;border:1px solid #999;border-radius:8px;padding:0 6px;color:#555;font-weight:normal}
.kind.identity{border-color:#1565c0;color:#1565c0}.kind.informational{border-color:#6a1b9a;color:#6a1b9a}
.kind-note{font-size:12px;color:#1565c0} tr.not-judged td{color:#888}
.partial{background:#fff8e1;border:1px solid #f9a825;border-radius:6px;padding:4px 12px;margin:8px 0}
.partial h2{border:0;margin-top:.4em}
"""

JS = """
function applyFilter(){
  var show={};document.querySelectorAll('.filters input').forEach(function(c){show[c.value]=c.checked});
  document.querySelectorAll('.record').forEach(function(r){
    var o=['passed','failed','error','skipped'].filter(function(x){return r.classList.contains(x)})[0];
    r.style.display=show[o]?'':'none';});
  document.querySelectorAll('.claim').forEach(function(c){
    var any=Array.prototype.some.call(c.querySelectorAll('.record'),function(r){return r.style.display!=='none'});
    c.style.display=any?'':'none';});
}
document.querySelectorAll('.filters input').forEach(function(c){c.addEventListener('change',applyFilter)});
"""


def _baseline_section(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    rows = [f'<tr><td><code>{esc(f["nodeid"])}</code></td><td><span class="badge {esc(f["from"])}">'
            f'{esc(f["from"])}</span> → <span class="badge {esc(f["to"])}">{esc(f["to"])}</span></td></tr>'
            for f in d.get("flips", [])]
    head = "<table><thead><tr><th>test</th><th>flip</th></tr></thead><tbody>"
    flips = f'{head}{"".join(rows[:FLIPS_SHOWN])}</tbody></table>' if rows else ""
    if len(rows) > FLIPS_SHOWN:  # the rest folded, so that a run that broke everywhere does not bury the page
        flips += (f'<details><summary>{len(rows) - FLIPS_SHOWN} more flips</summary>{head}'
                  f'{"".join(rows[FLIPS_SHOWN:])}</tbody></table></details>')
    moves = "".join(f'<tr><td><code>{esc(m["nodeid"])}</code></td><td>{esc(m["name"])} {esc(m.get("label", ""))}</td>'
                    f'<td class=num>{fmt(m.get("old"))}</td><td class=num>{fmt(m.get("new"))}</td>'
                    f'<td class=num>{fmt(m["relative_change"])}{" (log10)" if m.get("log10") else ""}</td>'
                    f'<td class=num>{esc(m.get("epoch"))}</td></tr>' for m in d.get("largest_moves", []))
    return (f'<h2>Against the baseline</h2><p class=muted>{esc(d.get("baseline"))}: {len(d.get("flips", []))} flipped, '
            f'{len(d.get("added", []))} added, {len(d.get("removed", []))} removed, '
            f'{len(d.get("moves_beyond_tolerance", []))} moves beyond tolerance {fmt(d.get("rtol"))}</p>'
            + (f'<p><strong>{len(d["not_compared"])} baseline records not compared</strong>: this partial session did '
               f'not run them ({esc(d.get("partial"))}).</p>' if d.get("not_compared") else "")
            + "".join(f'<p class=muted>threshold changed: <code>{esc(t["claim_id"])}.{esc(t["name"])}</code> '
                      f'{fmt(t["old"])} → {fmt(t["new"])} (a flip of this claim may come from the rule, not the model)</p>'
                      for t in d.get("threshold_changes", []))
            + flips
            + ("<h4>largest moves</h4><table><thead><tr><th>test</th><th>value</th><th>baseline</th><th>now</th>"
               f"<th>change</th><th>epoch</th></tr></thead><tbody>{moves}</tbody></table>" if moves else ""))


PARTIAL_ROWS = 200  # tests not run listed in the page (claims.json lists up to 10 000, and their count)


def _partial_section(partial: dict[str, Any] | None, update: dict[str, Any] | None) -> str:
    """At the top of the page: this session did not run every claim test it collected (what ran, what did not and
    why), or this baseline was updated from such a session."""
    out = ""
    if partial:
        rows = [f'<tr><td><code>{esc(e.get("nodeid"))}</code></td><td>{esc(e.get("why"))}'
                f'{" by " + esc(e["by"]) if e.get("by") else ""}</td></tr>' for e in partial.get("not_run", [])]
        more = partial.get("not_run_count", len(rows)) - min(len(rows), PARTIAL_ROWS)
        table = (f'<details><summary>{partial.get("not_run_count", len(rows))} claim tests not run</summary><table>'
                 f'<thead><tr><th>test</th><th>why</th></tr></thead><tbody>{"".join(rows[:PARTIAL_ROWS])}</tbody>'
                 f'</table>{f"<p class=muted>… and {more} more (claims.json, partial.not_run)</p>" if more else ""}'
                 f'</details>' if rows else "")
        kept = (f'<p>The complete report of an earlier session, <code>{esc(partial["complete_report"])}</code>, was '
                f'left as it was; this one was written beside it.</p>' if partial.get("complete_report") else "")
        out += (f'<div class=partial><h2>Partial session</h2><p><strong>{esc(partial.get("ran"))} of '
                f'{esc(partial.get("collected"))} claim tests ran</strong>: {esc(partial.get("reason"))}. The verdicts '
                f'below are those of the tests that ran; the others were not judged.</p>{kept}{table}</div>')
    if update:
        kept_from = update.get("kept_from") or {}
        out += (f'<div class=partial><p>A baseline updated from a partial session ({esc(update.get("reason"))}): '
                f'{esc(update.get("updated"))} records updated, {esc(update.get("kept"))} kept from the baseline of '
                f'{esc(kept_from.get("created"))} (commit <code>{esc((kept_from.get("git_commit") or "")[:12])}'
                f'</code>).</p></div>')
    return out


def _unjudged_section(records: list[dict]) -> str:
    """The claims that could not be judged, by distinct message (one bad checkpoint: one row, not one per claim)."""
    messages = unjudged_messages(records)
    if not messages:
        return ""
    rows = "".join(f"<tr><td class=num>{n}</td><td><pre class=msg>{esc(m)}</pre></td></tr>" for m, n in messages)
    return (f"<h2>Not judged</h2><p class=muted>{sum(n for _, n in messages)} claims could not be judged (outcome "
            "<span class='badge error'>error</span>: a bad input or a crash, no verdict either way). What to fix, "
            f"with how many claims each message stopped:</p><table><thead><tr><th>claims</th><th>message</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def _overrides_section(overrides: dict[str, Any] | None) -> str:
    if not overrides:
        return ""
    rows = "".join(f"<tr><td>{esc(cid)}</td><td><code>{esc(name)}</code></td><td class=num>{fmt(value)}</td></tr>"
                   for cid, values in sorted(overrides.items()) for name, value in sorted(values.items()))
    return ("<h2>Thresholds changed from the defaults</h2><p class=muted>These verdicts were judged with the "
            "thresholds below instead of the catalogue's defaults (<code>claimlens thresholds</code> lists all).</p>"
            f"<table><thead><tr><th>claim</th><th>threshold</th><th>value used</th></tr></thead><tbody>{rows}"
            "</tbody></table>")


def render(document: dict[str, Any]) -> str:
    records = document.get("records", [])
    runs = [r.get("label") for r in document.get("runs", [])] or sorted({r.get("run") for r in records if r.get("run")})
    claims: dict[str, list] = defaultdict(list)
    for r in records:
        claims[r.get("claim_id") or r["nodeid"]].append(r)
    counts = document.get("summary") or summary(document.get("records", []))
    badges = " · ".join(f'<span class="badge {o}">{counts.get(o, 0)} {o}</span>' for o in OUTCOMES)
    partial = ' <span class="badge error">partial</span>' if document.get("partial") else ""
    commit = (f" · commit {esc(document['git_commit'][:12])}" if document.get("git_commit")
              else " · no git commit (not judged in a git checkout)")
    head = (f"<h1>claimlens report{partial}</h1><p class=muted>created {esc(document.get('created'))} · claimlens "
            f"{esc(document.get('versions', {}).get('claimlens'))}{commit}"
            f" · {esc(document.get('machine', {}).get('platform'))}</p>"
            f"<p>{badges}</p>")
    def run_counts(label):
        rs = [r for r in records if r.get("run") == label]
        c = summary(rs)
        return " ".join(f'<span class="badge {o}">{c[o]}</span>' for o in OUTCOMES)

    merged = any("judged" in r for r in document.get("runs", []))

    def judged(r):
        j = r.get("judged") or {}
        over = "; ".join(f"{cid}.{n}={fmt(v)}" for cid, vs in sorted((j.get("threshold_overrides") or {}).items())
                         for n, v in sorted(vs.items()))
        return (f"<td><code>{esc((j.get('git_commit') or '')[:12])}</code> {esc(j.get('created'))}"
                f"{'<br>thresholds changed: ' + esc(over) if over else ''}</td>")

    run_rows = "".join(
        f"<tr><td>{esc(r.get('label'))}</td><td>{run_counts(r.get('label'))}</td>"
        f"<td><code>{esc(r.get('run_dir') or r.get('path'))}</code></td>"
        f"<td><code>{esc((r.get('content_hash') or '')[:12])}</code></td><td class=num>{esc(r.get('n_checkpoints'))}</td>"
        f"<td>{esc(_trained_on(r))}</td>"
        f"<td>{esc((r.get('spec') or {}).get('description', '') or r.get('provenance', ''))}"
        f"{_split_unknown(r)}{_members(r)}</td>"
        f"{judged(r) if merged else ''}</tr>" for r in document.get("runs", []))
    runs_table = ("<h2>Runs</h2><table><thead><tr><th>run</th><th>passed · failed · error · skipped</th>"
                  "<th>directory</th><th>content hash</th>"
                  f"<th>checkpoints</th><th>trained on</th><th>spec</th>{'<th>judged (commit, time, thresholds)</th>' if merged else ''}"
                  f"</tr></thead><tbody>{run_rows}</tbody></table>")
    conflicts = document.get("threshold_conflicts") or []
    if conflicts:
        rows = "".join(f"<tr><td>{esc(c['claim_id'])}</td><td><code>{esc(c['name'])}</code></td><td>"
                       + ", ".join(f"{esc(run)}: {fmt(v)}" for run, v in c["values"].items()) + "</td></tr>"
                       for c in conflicts)
        runs_table += ("<h2>Claims judged by different thresholds</h2><p class=muted>These reports were merged "
                       "from sessions that judged the same claim by different rules: compare their verdicts "
                       f"with care.</p><table><tbody>{rows}</tbody></table>")

    def cell(claim_records, run):
        rs = [r for r in claim_records if r.get("run") == run]
        if not rs:
            return "<td class=muted>–</td>"
        c = summary(rs)
        o = overall(c)
        detail = (f" {c['passed']}/{len(rs)}" + ("" if o == "passed" else " passed")) if len(rs) > 1 else ""
        counts = ", ".join(f"{c[x]} {x}" for x in OUTCOMES if c[x])
        return f'<td><span class="badge {o}" title="{esc(counts)}">{o}{detail}</span></td>'

    def family(rs):  # the claim's family (its folder under claimlens/families); a report without it: the claims file
        return rs[0].get("family") or rs[0]["nodeid"].split("::")[0].rsplit("/", 1)[-1].removeprefix(
            "test_").removesuffix(".py")

    seeds = document.get("over_seeds") or []
    groups = sorted({tuple(s["runs"]) for s in seeds})
    by_group = {(s["claim_id"], tuple(s["runs"])): s for s in seeds}

    def seed_cell(cid, group):
        s = by_group.get((cid, group))
        if s is None:
            return "<td class=muted>–</td>"
        o = "passed" if s["reproduced"] else "failed"
        lo, hi = s["interval"]
        return (f'<td><span class="badge {o}" title="95% interval {lo:.2f}–{hi:.2f}; holds on '
                f'{esc(", ".join(s["holds_on"]) or "none")}">{s["k"]} of {s["n"]}</span></td>')

    matrix = ("<h2>Claims × runs</h2><table class=matrix><thead><tr><th>family</th><th>claim</th>"
              + "".join(f"<th>{esc(r)}</th>" for r in runs)
              + "".join(f"<th title='holds in k of n seeds: {esc(', '.join(g))}'>over seeds<br>"
                        f"<span class=muted>{esc(g[0])} …</span></th>" for g in groups)
              + "</tr></thead><tbody>"
              + "".join(f'<tr><td>{esc(family(rs))}</td><td><a href="#{esc(cid)}">{esc(cid)}</a> '
                        f'{kind_badge(rs[0].get("claim_kind"))}</td>'
                        + "".join(cell(rs, r) for r in runs) + "".join(seed_cell(cid, g) for g in groups) + "</tr>"
                        for cid, rs in sorted(claims.items(), key=lambda kv: (family(kv[1]), kv[0]))) + "</tbody></table>")
    if seeds:
        rows = "".join(
            f"<tr><td>{esc(s['claim_id'])}</td><td>{esc(', '.join(s['runs']))}</td><td class=num>{s['k']} of {s['n']}"
            f"</td><td class=num>{s['interval'][0]:.2f} – {s['interval'][1]:.2f}</td>"
            f"<td>{'<span class=ok>reproduced</span>' if s['reproduced'] else '<span class=bad>not reproduced</span>'}"
            f"</td></tr>" for s in seeds)
        matrix += ("<h2>Over seeds</h2><p class=muted>A claim holds on a seed when every test of it on that run "
                   "passed; seeds where it was skipped are not counted. Interval: 95% Wilson. Reproduced: holds in "
                   "at least 2 of 3 (k / n ≥ 2/3).</p><table><thead><tr><th>claim</th><th>seeds (runs)</th>"
                   f"<th>holds in</th><th>95% interval</th><th></th></tr></thead><tbody>{rows}</tbody></table>")
    filters = ('<p class=filters>show: ' + "".join(
        f'<label><input type=checkbox value="{o}" checked> {o}</label>' for o in OUTCOMES) + "</p>")
    sections = []
    for cid, rs in claims.items():
        first = rs[0]
        by_run: dict[Any, list] = defaultdict(list)
        for r in rs:
            by_run[r.get("run")].append(r)
        body = []
        for run, group in by_run.items():
            body.append(f"<h4>run {esc(run)}</h4>{_reference_block(group)}")
            if len(group) > 3 and all("epoch" in r.get("parameters", {}) for r in group):
                body.append(_per_checkpoint_card(group))
            else:
                body.extend(_record_card(r) for r in group)
        kind = first.get("claim_kind") or "empirical"
        validation = _validation_block(first.get("validation"))
        kind_note = (f'<p class="kind-note">{esc(KIND_TEXT[kind])}</p>' if kind != "empirical" else "")
        sections.append(f'<section class="claim" id="{esc(cid)}"><h3>{esc(cid)} {kind_badge(kind)}</h3>'
                        f'<p>{esc(first.get("statement"))}</p>{kind_note}'
                        f'<p class=muted>source: {esc(first.get("source"))}</p>{validation}{"".join(body)}</section>')
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>claimlens report</title>"
            f"<style>{CSS}</style></head><body>{head}"
            f"{_partial_section(document.get('partial'), document.get('baseline_update'))}"
            f"{_overrides_section(document.get('threshold_overrides'))}"
            f"{_unjudged_section(records)}{_baseline_section(document.get('baseline_diff'))}"
            f"{runs_table}{matrix}<h2>Claims</h2>{filters}"
            f"{''.join(sections)}<script>{JS}</script></body></html>")


def render_file(json_path: str | Path, html_path: str | Path) -> Path:
    """Read a claims.json and write the HTML (atomically). Raises :class:`ReportError` for a file that is
    not a claimlens report."""
    document = load(json_path)
    html_path = Path(html_path)
    atomic_write_text(html_path, render(document))
    return html_path


def _trained_on(run: dict) -> str:
    """Where a run of the runs table was trained (device, intra-op threads, executor: run.json's ``source``), or how
    it came (an import); empty for a set or a curves run."""
    from claimlens.runs.manifest import where_trained

    source = run.get("source") or {}
    if not isinstance(source, dict) or not source:
        return ""
    return where_trained(source) or str(source.get("kind") or "")

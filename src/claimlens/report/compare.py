"""Compare two claims reports (baseline gating).

Pure functions over the JSON documents: everything compared, thresholds and their defaults included, is read from
the two documents (no claim, rule or threshold of this claimlens is imported). A *flip* is a test whose outcome changed between passed and
failed, or that passed in the baseline and now could not be judged (error) or is missing: the gate never goes
green on what it did not judge; *moves* are relative changes of measured values (scalars matched by name, label and epoch;
series matched by name and label, compared at their common epochs) beyond a tolerance.

A report marked ``partial`` (its session did not run every claim test) is compared on what ran: the baseline's
other records are *not compared* (counted and listed, never flips, never "removed"). :func:`update` folds such a
report into a baseline, keeping the records it did not run.
"""

from __future__ import annotations

import math
import re
from typing import Any

DEFAULT_RTOL = 0.05
FLIPS_SHOWN = 30  # in the terminal; claims.json keeps every flip


def natural(nodeid: str) -> list:
    """Sort key of a test id with its numbers as numbers: ``epoch=100`` before ``epoch=1000``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", nodeid)]


def _rel(old: float, new: float) -> float:
    if old == new:
        return 0.0
    return abs(new - old) / max(abs(old), 1e-12)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _moved(old_r: dict[str, dict], new_r: dict[str, dict]) -> dict[str, str]:
    """Baseline node ids whose test now lives in another claims file, mapped to the new id: the same test id after the
    file (``test_x[run=default]``) and the same claim, found once among the new ids the baseline lacks (a claims file
    renamed or merged, as when the claims were gathered one file per family)."""
    came: dict[tuple, list[str]] = {}
    for nodeid in set(new_r) - set(old_r):
        came.setdefault((nodeid.split("::", 1)[-1], new_r[nodeid].get("claim_id")), []).append(nodeid)
    out = {}
    for nodeid in set(old_r) - set(new_r):
        found = came.get((nodeid.split("::", 1)[-1], old_r[nodeid].get("claim_id")), [])
        if len(found) == 1:
            out[nodeid] = found[0]
    return out


def diff(old: dict, new: dict, *, rtol: float = DEFAULT_RTOL, tolerances: dict[str, float] | None = None,
         top: int = 10) -> dict[str, Any]:
    """What changed from ``old`` (the baseline) to ``new``.

    ``tolerances`` maps a measurement or series name to its own relative tolerance (default ``rtol``).
    Series flagged ``log_scale`` are compared on log10 values (a relative move in orders of magnitude).
    """
    tolerances = tolerances or {}
    old_r = {r["nodeid"]: r for r in old.get("records", [])}
    new_r = {r["nodeid"]: r for r in new.get("records", [])}
    moved = _moved(old_r, new_r)
    old_r = {moved.get(nodeid, nodeid): r for nodeid, r in old_r.items()}
    flips, moves = [], []
    for nodeid in sorted(set(old_r) & set(new_r), key=natural):
        a, b = old_r[nodeid], new_r[nodeid]
        if a["outcome"] != b["outcome"] and (
                {a["outcome"], b["outcome"]} == {"passed", "failed"} or (a["outcome"], b["outcome"]) == ("passed", "error")):
            flips.append({"nodeid": nodeid, "claim_id": b.get("claim_id"), "from": a["outcome"], "to": b["outcome"],
                          "message": b.get("message")})
        moves.extend(_measurement_moves(nodeid, a, b, rtol, tolerances))
        moves.extend(_series_moves(nodeid, a, b, rtol, tolerances))
    absent = sorted(set(old_r) - set(new_r), key=natural)
    partial = new.get("partial")
    # A claim that passed in the baseline and was not judged now (its test is gone, or its process died before
    # it reported) is a flip too: the gate must never go green on what it did not judge. A partial session's report
    # says it did not run every test: what it did not run is counted apart (not compared), never passed over.
    for nodeid in [] if partial else absent:
        if old_r[nodeid]["outcome"] == "passed":
            flips.append({"nodeid": nodeid, "claim_id": old_r[nodeid].get("claim_id"), "from": "passed",
                          "to": "missing", "message": "passed in the baseline; not judged in this session"})
    moves = [m for m in moves if m["relative_change"] > 0]  # what did not move is no move
    moves.sort(key=lambda m: -m["relative_change"])
    return {
        "threshold_changes": _threshold_changes(old, new),
        "flips": flips,
        "added": sorted(set(new_r) - set(old_r), key=natural),
        "removed": [] if partial else absent,
        "not_compared": absent if partial else [],
        "partial": (partial or {}).get("reason"),
        "moves_beyond_tolerance": [m for m in moves if m["beyond_tolerance"]],
        "largest_moves": moves[:top],
        "rtol": rtol,
        "tolerances": tolerances,
    }


def _threshold_changes(old: dict, new: dict) -> list[dict[str, Any]]:
    """Thresholds judged by differently in the two reports (their ``threshold_overrides`` against the defaults),
    so that a flip caused by a changed rule is not read as a changed model. The defaults are the reports' own
    (:func:`recorded_defaults`); a default neither report records reads as None."""
    a, b = old.get("threshold_overrides") or {}, new.get("threshold_overrides") or {}
    defaults_a, defaults_b = recorded_defaults(old), recorded_defaults(new)
    out = []
    for cid in sorted(set(a) | set(b)):
        for name in sorted(set(a.get(cid, {})) | set(b.get(cid, {}))):
            da, db = defaults_a.get(cid, {}).get(name), defaults_b.get(cid, {}).get(name)
            was = a.get(cid, {}).get(name, da if da is not None else db)
            now = b.get(cid, {}).get(name, db if db is not None else da)
            if was != now:
                out.append({"claim_id": cid, "name": name, "old": was, "new": now})
    return out


def recorded_defaults(document: dict) -> dict[str, dict[str, float]]:
    """claim id → threshold name → default value, as ``document`` records them: its ``threshold_defaults`` (the
    overridden claims', written with them) and each record's ``thresholds[name]["default"]`` (written
    since schema 2). Older reports record none: ``{}``."""
    out: dict[str, dict[str, float]] = {}
    for r in document.get("records", []):
        for name, t in (r.get("thresholds") or {}).items():
            if isinstance(t, dict) and t.get("default") is not None:
                out.setdefault(r.get("claim_id"), {}).setdefault(name, t["default"])
    for cid, names in (document.get("threshold_defaults") or {}).items():
        out.setdefault(cid, {}).update({n: v for n, v in names.items() if v is not None})
    return out


def _measurement_moves(nodeid, a, b, rtol, tolerances):
    index = {(m["name"], m.get("label", ""), m.get("epoch")): m for m in a.get("measurements", [])}
    for m in b.get("measurements", []):
        key = (m["name"], m.get("label", ""), m.get("epoch"))
        o = index.get(key)
        if o is None or not (_num(o.get("value")) and _num(m.get("value"))):
            continue
        change = _rel(o["value"], m["value"])
        tol = tolerances.get(m["name"], rtol)
        yield {"nodeid": nodeid, "kind": "measurement", "name": m["name"], "label": m.get("label", ""),
               "epoch": m.get("epoch"), "old": o["value"], "new": m["value"], "relative_change": change,
               "tolerance": tol, "beyond_tolerance": change > tol}


def _series_moves(nodeid, a, b, rtol, tolerances):
    index = {(s["name"], s.get("label", "")): s for s in a.get("series", [])}
    for s in b.get("series", []):
        o = index.get((s["name"], s.get("label", "")))
        if o is None:
            continue
        old_at = dict(zip(o["epochs"], o["values"]))
        worst, worst_epoch, pair = 0.0, None, (None, None)
        for epoch, value in zip(s["epochs"], s["values"]):
            before = old_at.get(epoch)
            if not (_num(before) and _num(value)):
                continue
            if s.get("log_scale") and before > 0 and value > 0:
                change = abs(math.log10(value) - math.log10(before))  # orders of magnitude
            else:
                change = _rel(before, value)
            if change > worst:
                worst, worst_epoch, pair = change, epoch, (before, value)
        tol = tolerances.get(s["name"], rtol)
        yield {"nodeid": nodeid, "kind": "series", "name": s["name"], "label": s.get("label", ""),
               "epoch": worst_epoch, "old": pair[0], "new": pair[1], "relative_change": worst,
               "log10": bool(s.get("log_scale")), "tolerance": tol, "beyond_tolerance": worst > tol}


def format_diff(d: dict[str, Any], *, flips_shown: int | None = FLIPS_SHOWN) -> list[str]:
    """Lines for a terminal: flips (the first ``flips_shown``; None: all), added/removed, the largest moves."""
    lines = [f"claims baseline: {len(d['flips'])} flipped, {len(d['added'])} added, {len(d['removed'])} removed, "
             f"{len(d['moves_beyond_tolerance'])} measured values moved beyond tolerance"]
    if d.get("not_compared"):  # on the first line: a partial session's "0 flipped" never reads as all clear
        n = len(d["not_compared"])
        lines[0] += (f"; {n} baseline record{'s' if n > 1 else ''} not compared (this partial session did not run "
                     f"{'them' if n > 1 else 'it'}: {d.get('partial')})")
    for t in d.get("threshold_changes", []):
        lines.append(f"  threshold changed: {t['claim_id']}.{t['name']} {t['old']} -> {t['new']} (a flip of this "
                     f"claim may come from the rule, not the model)")
    shown = len(d["flips"]) if flips_shown is None else flips_shown
    for f in d["flips"][:shown]:
        lines.append(f"  FLIP {f['from']} -> {f['to']}: {f['nodeid']}")
    if len(d["flips"]) > shown:
        lines.append(f"  … and {len(d['flips']) - shown} more flips (all of them: baseline_diff.flips in "
                     f"claims.json, or `claimlens diff OLD NEW`)")
    for n in d["added"][:20]:
        lines.append(f"  added:   {n}")
    for n in d["removed"][:20]:
        lines.append(f"  removed: {n}")
    for m in d["largest_moves"]:
        unit = "orders of magnitude" if m.get("log10") else "relative"
        where = f" at epoch {m['epoch']}" if m.get("epoch") is not None else ""
        lines.append(f"  move {m['relative_change']:.3g} ({unit}, tolerance {m['tolerance']:g}){where}: "
                     f"{m['name']}{' [' + m['label'] + ']' if m.get('label') else ''} {m['old']!r} -> {m['new']!r} "
                     f"in {m['nodeid']}")
    return lines


def update(old: dict, new: dict) -> dict[str, Any]:
    """The baseline ``old`` updated from ``new``, the report of a partial session: ``new``'s records replace the
    baseline's records of the same tests (a test found under another claims file, as in :func:`diff`, is the same
    test) and every other baseline record is kept, so that rerunning a few claims (``--lf``, ``-k``) never drops
    the rest from the baseline.

    Top-level provenance is ``new``'s; a run judged in ``new`` takes its entry there, the runs only the kept records
    name keep theirs; threshold overrides are ``new``'s for the claims it judged and ``old``'s for the others (every
    record also states the thresholds it was judged by). ``baseline_update`` says how many records were updated
    (``added``: of them, those the baseline did not have) and kept, from which baseline, and why the session was
    partial."""
    from claimlens.report.document import over_seeds, summary

    new_r = {r["nodeid"]: r for r in new.get("records", [])}
    old_r = {r["nodeid"]: r for r in old.get("records", [])}
    moved = _moved(old_r, new_r)
    kept = [r for nodeid, r in old_r.items() if nodeid not in new_r and nodeid not in moved]
    records = sorted(kept + list(new_r.values()), key=lambda r: r["nodeid"])
    judged = {run.get("label") for run in new.get("runs", [])}
    named = {r.get("run") for r in kept}
    runs = list(new.get("runs", [])) + [run for run in old.get("runs", []) if run.get("label") not in judged
                                        and run.get("label") in named]
    runs.sort(key=lambda run: str(run.get("label")))
    claims = {r.get("claim_id") for r in new_r.values()}
    document = {k: v for k, v in new.items() if k not in ("partial", "baseline_diff", "over_seeds",
                                                           "threshold_overrides", "threshold_defaults")}
    document.update(runs=runs, records=records, summary=summary(records))
    seeds = over_seeds(records, runs)
    if seeds:
        document["over_seeds"] = seeds
    for key in ("threshold_overrides", "threshold_defaults"):
        values = {cid: v for cid, v in (old.get(key) or {}).items() if cid not in claims}
        values.update(new.get(key) or {})
        if values:
            document[key] = values
    document["baseline_update"] = {
        "updated": len(new_r), "added": len(set(new_r) - set(old_r) - set(moved.values())), "kept": len(kept),
        "kept_from": {"created": old.get("created"), "git_commit": old.get("git_commit")},
        "reason": (new.get("partial") or {}).get("reason"),
    }
    return document

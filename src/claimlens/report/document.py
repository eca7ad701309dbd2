"""The report document (``claims.json``): its schema version, provenance, records, summary and merge.

The one owner of the document's shape. The pytest plugin builds records and the document here; the
baseline comparison, the HTML renderer and the command line read documents through :func:`load`.
Pure Python: no torch (the plugin imports this at session end; ``claimlens merge`` needs no model).

A record (one per claim test) holds: ``nodeid``, ``claim_id``, ``statement``, ``source``, ``run``,
``parameters``, ``outcome`` (passed, failed, error, skipped: *failed* is a verdict, the claim did not hold;
*error* is none, the claim could not be judged — an unreadable checkpoint, a setup error, a crash), ``message``, ``duration`` (s), and what the test
was judged on — ``series``, ``measurements``, ``phases``, ``notes`` (see :class:`claimlens.plugin.claim.Claim`).
A document of a session that did not run every claim test it collected carries ``partial`` (why, how many ran,
which did not and why: :func:`claimlens.plugin.session.partial_of`). The schema is ``report/schema.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claimlens._io import atomic_write_json
from claimlens.core.jsonable import jsonable
from claimlens.errors import ClaimlensError

# 2: claim_kind, validation, thresholds per record; status, source_value, margin per check
# 3: over_seeds (claims judged on several seeds of one recipe); run sets in runs (kind sweep / curves_set, members);
#    series over a run set's axis (x_name)
# 4: outcome "error" for a claim that could not be judged (it was "failed", read as a verdict); errors_on over seeds;
#    later, optional fields only (read by every reader of 4): partial (a session that did not run every claim test),
#    baseline_update (a baseline updated from a partial session)
# 5: validation is {status, scope, artifacts} (catalogue Revision 3; was a sentence); reference (the reference runs
#    beside the verdict: key check, their values and outcomes, the sentence on what the outcome means)
REPORT_SCHEMA_VERSION = 5
OUTCOMES = ("passed", "failed", "error", "skipped")

def empty_evidence() -> dict[str, Any]:
    return {"series": [], "measurements": [], "phases": {}, "notes": []}


class ReportError(ClaimlensError):
    """A file is not a readable claimlens report."""


def provenance(rootdir: Path) -> dict[str, Any]:
    """Creation time, tool and library versions, machine and git commit of ``rootdir``."""
    versions = {"python": platform.python_version()}
    for module in ("claimlens", "pytest", "torch", "transformer_lens"):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, "__version__"):
            versions[module] = str(mod.__version__)
    commit = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": versions,
            "machine": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "git_commit": commit}


def build_record(*, nodeid: str, claim: dict[str, Any], run: str | None, parameters: dict[str, Any], outcome: str,
                 message: str | None, duration: float, evidence: dict[str, Any] | None,
                 thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record: the test, its claim (``id``, ``family``, ``statement``, ``source``, ``kind``, ``validation``: status,
    scope and artifacts; ``reference``: the reference runs beside it, :mod:`claimlens.report.references`), the
    outcome, the evidence it was judged on and the thresholds it was judged by (value, default, source's value, why)."""
    return jsonable({
        "nodeid": nodeid,
        "claim_id": claim.get("id"),
        "family": claim.get("family") or "",
        "claim_kind": claim.get("kind") or "empirical",
        "validation": claim.get("validation") or None,
        "reference": claim.get("reference") or None,
        "statement": claim.get("statement"),
        "source": claim.get("source"),
        "run": run,
        "parameters": parameters,
        "outcome": outcome,
        "message": message,
        "duration": round(duration, 4),
        "thresholds": thresholds or {},
        **(evidence if evidence is not None else empty_evidence()),
    })


def crash_record(nodeid: str, reason: str) -> dict[str, Any]:
    """An error record (no verdict) for a test whose process died before it reported (an xdist worker crash)."""
    return {"nodeid": nodeid, "claim_id": None, "claim_kind": "empirical", "validation": None, "reference": None,
            "statement": None,
            "source": None, "run": None, "parameters": {}, "outcome": "error",
            "message": f"the process running this test died before it reported: no verdict ({reason.strip()[-300:]})",
            "duration": 0.0, "thresholds": {}, **empty_evidence()}


def error_record(nodeid: str, message: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error record standing in for one that could not be written; keeps what was plain of the original."""
    record = record or {}
    keep = {k: record.get(k) for k in ("claim_id", "statement", "source", "run") if isinstance(record.get(k), str)}
    return {**crash_record(nodeid, ""), **keep, "message": message}


def summary(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Count of records per outcome (passed, failed, error, skipped)."""
    records = list(records)
    return {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}


def unjudged_messages(records: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """The distinct first lines of the messages of the records that could not be judged (outcome ``error``), each
    with how many records share it, most shared first: one unreadable checkpoint is one entry, not one per claim."""
    from collections import Counter

    def first_line(record: dict[str, Any]) -> str:
        text = (record.get("message") or "").strip()
        return text.splitlines()[0][:400] if text else "no message"

    return Counter(first_line(r) for r in records if r["outcome"] == "error").most_common()


# catalogue Revision 2: "a claim that holds in ≥ 2 of 3 seeds of the source recipe is 'reproduced'"
REPRODUCED_SHARE = 2 / 3
_SEEDLESS = {"train": ("seed",)}


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``k / n`` (Wilson 1927): ``(low, high)`` in ``[0, 1]``.
    Raises ``ValueError`` for ``n < 1`` or ``k`` outside ``0 … n``."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exactly 0 (1) at k = 0 (n); float error aside
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def recipe(run: dict[str, Any]) -> str | None:
    """What a run's spec fixes besides its seed (task, model, training without ``train.seed``), as a canonical
    string; ``None`` for a run without a spec (curves, run sets). Runs with one recipe are seeds of it."""
    spec = run.get("spec")
    if not isinstance(spec, dict) or run.get("kind") in ("sweep", "curves_set"):
        return None
    parts = {t: {k: v for k, v in (spec.get(t) or {}).items() if k not in _SEEDLESS.get(t, ())}
             for t in ("task", "model", "train")}
    return json.dumps(parts, sort_keys=True)


def over_seeds(records: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every claim judged on two or more seeds of one recipe: it "holds in k of n" seeds (a seed holds it when
    every record of the claim on that run passed; a seed where it was skipped is not counted; a seed where it could
    not be judged (an error, no failure) counts in ``n`` but not in ``k``, so that what was not judged never makes
    a claim reproduced), the 95% Wilson interval of k / n, and whether it is reproduced (k / n ≥ 2/3, catalogue
    Revision 2)."""
    groups: dict[str, list[str]] = {}
    seeds: dict[str, set] = {}
    for run in runs:
        key = recipe(run)
        if key is not None:
            groups.setdefault(key, []).append(run.get("label"))
            seeds.setdefault(key, set()).add(json.dumps((run.get("spec") or {}).get("train", {}).get("seed")))
    out = []
    for key, labels in groups.items():
        if len(labels) < 2 or len(seeds[key]) < 2:
            continue
        by_claim: dict[str, dict[str, list[str]]] = {}
        for r in records:
            if r.get("run") in labels:
                by_claim.setdefault(r.get("claim_id"), {}).setdefault(r["run"], []).append(r["outcome"])
        for cid, per_run in sorted(by_claim.items(), key=lambda kv: str(kv[0])):
            held = [run for run, o in per_run.items() if "passed" in o and not {"failed", "error"} & set(o)]
            failed = [run for run, o in per_run.items() if "failed" in o]
            errors = [run for run, o in per_run.items() if "error" in o and "failed" not in o]
            n = len(held) + len(failed) + len(errors)
            if n == 0:
                continue
            low, high = wilson_interval(len(held), n)
            out.append({"claim_id": cid, "runs": sorted(labels), "holds_on": sorted(held), "fails_on": sorted(failed),
                        "errors_on": sorted(errors), "k": len(held), "n": n, "interval": [low, high],
                        "reproduced": len(held) / n >= REPRODUCED_SHARE - 1e-12})
    return out


def build_document(records: list[dict[str, Any]], *, runs: list[dict[str, Any]], rootdir: Path,
                   threshold_overrides: dict[str, dict[str, float]] | None = None,
                   threshold_defaults: dict[str, dict[str, float | None]] | None = None) -> dict[str, Any]:
    """The session's document: provenance, the runs judged, the records (sorted by node id), their summary and,
    where several seeds of one recipe were judged, each claim's verdict over the seeds (``over_seeds``). With
    ``threshold_overrides`` (claim id → name → value judged by), ``threshold_defaults`` records their defaults
    (claim id → name → default, None where unknown), so that two reports compare from what they hold."""
    records = sorted(records, key=lambda r: r["nodeid"])
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        **provenance(rootdir),
        "runs": runs,
        "records": records,
        "summary": summary(records),
    }
    seeds = over_seeds(records, runs)
    if seeds:
        document["over_seeds"] = seeds
    if threshold_overrides:
        document["threshold_overrides"] = threshold_overrides
        if threshold_defaults:
            document["threshold_defaults"] = threshold_defaults
    return document


PROVENANCE = ("created", "versions", "machine", "git_commit")


def _shared_ids_message(duplicates: list[str], runs: dict[tuple, dict]) -> str:
    """Why two reports share test ids: two different runs under one label (say how to name them apart), or one run
    judged twice."""
    hashes: dict[str, set[str]] = {}
    for label, content_hash in runs:
        hashes.setdefault(str(label), set()).add(str(content_hash))
    clash = sorted(label for label, found in hashes.items() if len(found) > 1)
    if clash:
        label = clash[0]
        found = ", ".join(sorted(h[:12] for h in hashes[label]))
        return (f"two different runs are both labelled {label!r} (content hashes {found}), so their tests have the "
                f"same ids ({duplicates[0]}): give each its own name — `claimlens import SOURCE --out RUN --name "
                f"NAME` for an import, the spec's name for a trained run — judge it again, then merge")
    return (f"the reports share test ids: the same run judged twice ({duplicates[0]}"
            f"{f' and {len(duplicates) - 1} more' if len(duplicates) > 1 else ''}); merge one report per run")


def merge(documents: list[dict]) -> dict[str, Any]:
    """One multi-run report from several (e.g. one pytest process per run on a CI matrix), independent of the
    order of ``documents``.

    Each run keeps how it was judged (``runs[i]["judged"]``: its report's creation time, versions, machine, git
    commit and threshold overrides). Top-level provenance holds only what all inputs share; top-level
    ``threshold_overrides`` only when every input was judged by the same overrides. A claim judged by different
    thresholds in different inputs is listed in ``threshold_conflicts``. Raises ``ValueError`` when two inputs hold
    the same test id (the same run judged twice)."""
    if not documents:
        raise ValueError("nothing to merge")
    runs: dict[tuple, dict] = {}
    records = []
    claim_thresholds: dict[str, dict[str, dict]] = {}  # claim -> name -> {run label: value judged by}
    for doc in documents:
        judged = {**{k: doc.get(k) for k in PROVENANCE}, "threshold_overrides": doc.get("threshold_overrides") or {}}
        labels = []
        for run in doc.get("runs", []):
            key = (run.get("label"), run.get("content_hash"))
            runs[key] = {**run, "judged": run.get("judged", judged)}
            labels.append(run.get("label"))
        for r in doc.get("records", []):
            records.append(r)
            for name, t in (r.get("thresholds") or {}).items():
                if isinstance(t, dict) and "value" in t:
                    claim_thresholds.setdefault(r.get("claim_id"), {}).setdefault(name, {})[r.get("run")] = t["value"]
    nodeids = [r["nodeid"] for r in records]
    duplicates = sorted({n for n in nodeids if nodeids.count(n) > 1})
    if duplicates:
        raise ValueError(_shared_ids_message(duplicates, runs))
    # overrides as each run was judged (reports written before records carried their thresholds have only these)
    for run in runs.values():
        for cid, names in (run["judged"].get("threshold_overrides") or {}).items():
            for name, value in names.items():
                claim_thresholds.setdefault(cid, {}).setdefault(name, {})[run.get("label")] = value
    runs_of_claim: dict[str, set] = {}
    for r in records:
        runs_of_claim.setdefault(r.get("claim_id"), set()).add(r.get("run"))
    conflicts = []
    for cid, names in sorted(claim_thresholds.items(), key=lambda kv: str(kv[0])):
        judged_runs = runs_of_claim.get(cid, set())
        for name, by_run in sorted(names.items()):
            values = {str(run): by_run.get(run, "default") for run in sorted(judged_runs, key=str)}
            if len(judged_runs) > 1 and len(set(map(str, values.values()))) > 1:
                conflicts.append({"claim_id": cid, "name": name, "values": values})
    overrides = [json.dumps(doc.get("threshold_overrides") or {}, sort_keys=True) for doc in documents]
    merged: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": max(str(doc.get("created") or "") for doc in documents),
        "versions": _shared([doc.get("versions") or {} for doc in documents]),
        "machine": _shared([doc.get("machine") or {} for doc in documents]),
        "git_commit": _same([doc.get("git_commit") for doc in documents]),
        "runs": [runs[k] for k in sorted(runs, key=lambda k: (str(k[0]), str(k[1])))],
        "records": sorted(records, key=lambda r: r["nodeid"]),
        "summary": summary(records),
        "merged_from": len(documents),
    }
    seeds = over_seeds(merged["records"], merged["runs"])
    if seeds:
        merged["over_seeds"] = seeds
    if len(set(overrides)) == 1 and documents[0].get("threshold_overrides"):
        merged["threshold_overrides"] = documents[0]["threshold_overrides"]
    defaults: dict[str, dict] = {}
    for doc in documents:  # the defaults each input recorded with its overrides
        for cid, names in (doc.get("threshold_defaults") or {}).items():
            defaults.setdefault(cid, {}).update(names)
    if defaults:
        merged["threshold_defaults"] = defaults
    if conflicts:
        merged["threshold_conflicts"] = conflicts
    partial = [doc["partial"] for doc in documents if doc.get("partial")]
    if partial:  # a merge of reports one of which is partial is partial: it says so, never hides it
        not_run = [entry for p in partial for entry in p.get("not_run", [])]
        merged["partial"] = {
            "reason": f"{len(partial)} of the {len(documents)} merged reports {'are' if len(partial) > 1 else 'is'} "
                      f"partial: " + "; ".join(sorted(str(p.get("reason")) for p in partial)),
            "ran": len(records), "collected": len(records) + sum(p.get("not_run_count", 0) for p in partial),
            "not_run_count": sum(p.get("not_run_count", 0) for p in partial),
            "not_run": sorted(not_run, key=lambda e: e["nodeid"]),
            "deselected_by": sorted({o for p in partial for o in p.get("deselected_by", [])}),
        }
    return merged


def _same(values: list) -> Any:
    return values[0] if len(set(map(str, values))) == 1 else None


def _shared(dicts: list[dict]) -> dict:
    """The entries every dict has with the same value (the rest are per run, under ``judged``)."""
    keys = set.intersection(*(set(d) for d in dicts)) if dicts else set()
    return {k: dicts[0][k] for k in sorted(keys) if all(d[k] == dicts[0][k] for d in dicts)}


def load(path: str | Path) -> dict[str, Any]:
    """A stored document; :class:`ReportError` naming the file if it is missing, not JSON or not a report."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"report {str(path)!r} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ReportError(f"{str(path)!r} is not a claimlens claims.json (no 'records' list)")
    return doc


def write(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically (an interrupted write keeps the previous file)."""
    atomic_write_json(Path(path), document, trailing_newline=False)

"""What a verdict stands on: the claim's validation (catalogue Revision 3) and the reference runs beside it.

The reference runs are a fixed population judged by every claim: the sources' artifacts that ship (the digitised
curves, the Clock/Pizza models and tables), the built-in runs, the default recipe's three seeds and the paper
recipe's seeds at the length this machine trains them. ``scripts/reference_runs.sh`` judges them and
``scripts/reference_runs.py`` stores their verdicts and checks in ``claimlens/reference/reference_runs.json``, keyed
by each rule's version (:func:`claimlens.families.rule_version`), and writes ``docs/reference_runs.md`` from the
same data. Each claim record then carries (:func:`reference_section`):

* ``validation``: ``{status, scope, artifacts}``, the artifacts that are shipped runs filled in with their verdict,
  value, threshold and margin from the reference data, numbers judged against the threshold in force;
* ``reference``: the key check (the record's tightest judged check), the user's value, the source's, each reference
  run's value and outcome (the HTML draws them as a strip chart), and one sentence on what a failure here means.

No torch: the plugin builds records with it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

DATA_FILE = "reference_runs.json"
SCHEMA = 1
# The population's groups, in the order sentences name them.
GROUPS = {
    "source": "the source's artifacts",
    "builtin": "the built-in runs",
    "default_seeds": "the default recipe's seeds",
    "paper_seeds": "the paper recipe's seeds",
}


def clearance(m: Mapping[str, Any]) -> float | None:
    """How far a check cleared its threshold, as a factor whatever its direction (≥ 1 passed, < 1 failed):
    measured ÷ threshold for ``>=`` / ``>``, threshold ÷ measured for ``<=`` / ``<``; None where that is not a
    ratio (a missing or non-positive value or threshold). claims.json keeps ``margin`` = measured ÷ threshold."""
    v, t, op = m.get("value"), m.get("threshold"), m.get("op")
    if op not in (">=", ">", "<=", "<") or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if not isinstance(t, (int, float)) or v <= 0 or t <= 0 or not math.isfinite(v) or not math.isfinite(t):
        return None
    return v / t if op in (">=", ">") else t / v


def judged(m: Mapping[str, Any]) -> bool:
    status = m.get("status") or {True: "passed", False: "failed"}.get(m.get("passed"))
    return status in ("passed", "failed")


def key_check(measurements: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The check a verdict turns on: the judged check with the tightest clearance (the one a change of run would
    flip first), else the first judged check, else None."""
    ms = [m for m in measurements if judged(m)]
    if not ms:
        return None
    ranked = [(clearance(m), i) for i, m in enumerate(ms) if clearance(m) is not None]
    m = ms[min(ranked)[1]] if ranked else ms[0]
    return {"name": m.get("name"), "label": m.get("label") or "", "value": m.get("value"), "op": m.get("op"),
            "threshold": m.get("threshold"), "source_value": m.get("source_value"),
            "status": m.get("status") or ("passed" if m.get("passed") else "failed")}


@functools.lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The stored reference data (``{"schema", "generated", "runs", "claims"}``), or an empty population when the
    package has none (a claim of the user's own has no reference runs either)."""
    try:
        text = resources.files("claimlens.reference").joinpath(DATA_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return {"schema": SCHEMA, "generated": {}, "runs": [], "claims": {}}
    data = json.loads(text)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"claimlens/reference/{DATA_FILE} has schema {data.get('schema')!r}, this code reads "
                         f"{SCHEMA}: regenerate it with scripts/reference_runs.sh")
    return data


def summarise(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One reference run's result for a claim from its records (several for a per-checkpoint claim): ``outcome``
    (passed / failed / skipped / error, or ``k/n`` checkpoints passing), the key check and every judged check's
    ``name → value`` (the tightest of a name), and the skip reason where there is one."""
    outcome: str
    counts = {o: sum(r["outcome"] == o for r in records) for o in ("passed", "failed", "skipped", "error")}
    if len(records) > 1 and all("epoch" in (r.get("parameters") or {}) for r in records):
        outcome = "skipped" if counts["skipped"] == len(records) else f"{counts['passed']}/{len(records)}"
    else:
        outcome = ("failed" if counts["failed"] else "error" if counts["error"] else
                   "passed" if counts["passed"] else "skipped")
    checks: dict[str, dict[str, Any]] = {}
    for r in records:
        for m in r.get("measurements") or []:
            if not judged(m) or not isinstance(m.get("value"), (int, float)) or isinstance(m.get("value"), bool):
                continue
            c, old = clearance(m), checks.get(m["name"])
            if old is None or (c is not None and (old["clearance"] is None or c < old["clearance"])):
                checks[m["name"]] = {"value": m["value"], "threshold": m.get("threshold"), "op": m.get("op"),
                                     "clearance": c, "status": m.get("status")}
    key = None
    for r in records:
        k = key_check(r.get("measurements") or [])
        if k is not None and (key is None or (clearance(k) or math.inf) < (clearance(key) or math.inf)):
            key = k
    reason = next((_cut(" ".join(r["message"].split()), 300) for r in records
                   if r["outcome"] in ("skipped", "error") and r.get("message")), "")
    return {"outcome": outcome, "key": key, "checks": checks, "reason": reason}


def _cut(text: str, n: int) -> str:
    """``text`` cut to at most ``n`` characters at a word boundary, with "…" where it was cut."""
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " …"


def passed(outcome: str) -> bool | None:
    """Whether a stored outcome passed (a per-checkpoint ``k/n`` passes when every checkpoint did); None when the
    claim was not judged there."""
    if "/" in outcome:
        k, n = outcome.split("/")
        return k == n
    return {"passed": True, "failed": False}.get(outcome)


def validation_section(spec: Any, thresholds: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec.validation`` as a record entry: numbers judged against ``thresholds`` (the thresholds in force), the
    shipped runs' verdicts, values and margins from the reference data."""
    out = spec.validation.to_dict(thresholds)
    results = (load()["claims"].get(spec.id) or {}).get("results") or {}
    for a in out["artifacts"]:
        if a["run"] is None:
            continue
        res = results.get(a["run"])
        if res is None:
            a["verdict"] = "not in the reference data"
            continue
        a["verdict"] = res["outcome"]
        key = res.get("key") or {}
        a["value"], a["threshold"], a["op"] = key.get("value"), key.get("threshold"), key.get("op")
        a["check"] = key.get("name")
        a["margin"] = clearance(key) if key else None
        a["at"] = "the default thresholds (the stored reference run)"
    failing = [a["name"] for a in out["artifacts"] if a.get("about") and a.get("run") is None and a["verdict"] == "failed"]
    if out["status"] == "validated" and failing:  # a threshold overridden past the source's own number
        out["declared"] = "validated"
        out["status"] = "contradicted"
        out["scope"] += f" — contradicted under the thresholds in force: {'; '.join(failing)} fails them"
    return out


def reference_section(spec: Any, family: str, measurements: list[Mapping[str, Any]], outcome: str,
                      validation: Mapping[str, Any]) -> dict[str, Any]:
    """The reference runs beside one record: the key check (this record's tightest judged check), its value here,
    the source's, and each reference run's value and outcome; whether the stored results are of this rule's version
    (``current``); and the sentence that says what this outcome means given the claim's status."""
    from claimlens.families import rule_version

    data = load()
    version = rule_version(spec.id, family)
    stored = data["claims"].get(spec.id)
    key = key_check(measurements)
    runs = []
    if stored:
        labels = {r["label"]: r for r in data["runs"]}
        for label, res in stored["results"].items():
            run = labels.get(label, {})
            check = (res.get("checks") or {}).get(key["name"]) if key else None
            runs.append({"label": label, "group": run.get("group", ""), "outcome": res["outcome"],
                         "value": check["value"] if check else None,
                         "threshold": check.get("threshold") if check else None,
                         # the key check's own verdict on that run (its outcome as a whole where it lacks the check)
                         "passed": (check.get("status") == "passed") if check and check.get("status") in
                         ("passed", "failed") else passed(res["outcome"])})
    current = bool(stored) and stored.get("rule_version") == version
    return {"rule_version": version, "current": current, "stored_version": (stored or {}).get("rule_version"),
            "generated": data.get("generated", {}).get("commit"),
            "key": key, "runs": runs,
            "sentence": sentence(spec, validation, outcome, stored, current,
                                 key["name"] if key and _sided(key["name"]) else None)}


def _count(results: Mapping[str, Any], runs: list[Mapping[str, Any]], group: str,
           check: str | None = None) -> tuple[int, int, list[str]]:
    labels = [r["label"] for r in runs if r.get("group") == group]
    if check is not None:  # only the runs that were judged by the same check (a pizza-side card: pizza-side runs)
        labels = [lab for lab in labels if check in ((results.get(lab) or {}).get("checks") or {})]
    judged_ = [(lab, passed(results[lab]["outcome"])) for lab in labels if lab in results]
    judged_ = [(lab, p) for lab, p in judged_ if p is not None]
    return sum(p for _, p in judged_), len(judged_), [lab for lab, p in judged_ if not p]


def _sided(check: str) -> bool:
    """A check judged on one side of a two-sided claim (the pizza/clock claims name their side in the check)."""
    return "side)" in check


def population_summary(claim_id: str, check: str | None = None) -> str:
    """"passes on 3 of 3 of the default recipe's seeds; fails on 2 of 3 of the paper recipe's seeds (16 000 epochs)"
    from the stored reference data; "" when the claim has none. ``check``: count only the runs that recorded this
    check (the record's key check), so that a claim judged on two sides counts the runs of this record's side."""
    data = load()
    stored = data["claims"].get(claim_id)
    if not stored:
        return ""
    parts = []
    for group in ("default_seeds", "paper_seeds", "builtin"):
        k, n, failing = _count(stored["results"], data["runs"], group, check)
        if not n:
            continue
        what = GROUPS[group]
        extra = data.get("groups", {}).get(group, "")
        what = f"{what} ({extra})" if extra else what
        if group == "builtin":
            parts.append(f"passes on {k} of {n} built-in runs judged" + (f" (fails on {', '.join(failing)})"
                                                                          if failing else ""))
        else:
            parts.append(f"passes on {k} of {n} of {what}")
    return "; ".join(parts)


def sentence(spec: Any, validation: Mapping[str, Any], outcome: str, stored: Mapping[str, Any] | None,
             current: bool, check: str | None = None) -> str:
    """One sentence: what this outcome means given the claim's status and its artifacts, and how the reference
    population fares."""
    status, scope = validation["status"], validation.get("scope") or ""
    about = [a for a in validation["artifacts"] if a.get("about")]
    passing = [a["name"] for a in about if passed(str(a.get("verdict") or ""))]
    failing = [a["name"] for a in about if passed(str(a.get("verdict") or "")) is False]
    failed = outcome == "failed"
    if outcome not in ("passed", "failed"):  # skipped or not judged: say what the claim stands on, nothing more
        what = {"validated": f"validated on {'; '.join(passing) or 'the source data'}",
                "contradicted": f"contradicted by {'; '.join(failing) or 'a source artifact'}",
                "unvalidated": "unvalidated (no source data checks this rule)",
                "not_applicable": "an identity" if spec.kind == "identity" else "informational"}[status]
        head = f"Not judged on this run; the rule is {what}"
    elif status == "contradicted":
        head = (f"Contradicted by {'; '.join(failing) or 'a source artifact'}: "
                + ("a failure here is the expected finding, about the rule rather than the run"
                   if failed else "a pass here does not vouch for the rule"))
    elif status == "validated":
        head = (f"Validated on {'; '.join(passing) or scope}: "
                + ("a failure here is a finding about this run" if failed else "this run agrees"))
    elif status == "unvalidated":
        head = ("Unvalidated (no source data checks this rule" + (f"; {scope}" if scope else "") + "): "
                + ("a failure may be the rule's as much as the run's" if failed else "a pass is not a replication"))
    else:
        head = ("An identity: a failure means a metric is computed wrong" if spec.kind == "identity" else
                "Informational: no pass rule")
    # an informational claim has no pass rule: its "passed" only means recorded, so no pass counts are quoted
    tail = population_summary(spec.id, check) if stored and spec.kind != "informational" else ""
    if stored and not current:
        tail = ("the reference runs were judged with an earlier version of this rule "
                "(regenerate them with scripts/reference_runs.sh)")
    return head + (f". Reference runs: {tail}." if tail else ".")

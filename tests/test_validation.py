"""Validation as data (catalogue Revision 3) and the reference runs beside each verdict.

Every claim states what its rule stands on (``ClaimSpec.validation``: status, scope, artifacts); the shipped
artifacts' verdicts are recomputed here in a real session (``--run nanda2022 … zhong2023_sweep``), so a rule changed
so that it no longer passes on the source's own data fails this file; numbers the sources printed are judged against
the thresholds in force; and the stored reference runs (``claimlens/reference/reference_runs.json``) must be of each
rule's current version (regenerate them with ``scripts/reference_runs.sh``).
"""

import json
import math

import pytest

from conftest import ROOT

pytest_plugins = ["pytester"]

SHIPPED_RUNS = ("nanda2022", "nanda2022_fractions", "zhong2023_model_a", "zhong2023_model_b", "zhong2023_sweep")


def _claims():
    from claimlens.families import CLAIMS

    return CLAIMS


def _verdict(outcome: str) -> bool | None:
    from claimlens.report.references import passed

    return passed(outcome)


def test_every_claim_states_its_validation_as_revision_3_defines_it():
    """Identity and informational claims are not_applicable; a validated claim has an artifact it is about that passes
    and is checked here (a shipped run, or a number judged against the claim's current default threshold: one the
    source printed, or one the catalogue records from a file that does not ship), and none it is about that fails; a
    contradicted claim has one it is about that fails."""
    from claimlens.report.references import load

    stored = load()["claims"]
    for cid, spec in _claims().items():
        v = spec.validation
        assert v.scope.strip(), cid
        if spec.kind in ("identity", "informational"):
            assert v.status == "not_applicable", cid
            continue
        assert v.status != "not_applicable", cid
        judged = [(a, a.judged(spec.thresholds)) for a in v.artifacts]
        for a, j in judged:
            if a.threshold_name is not None:
                assert a.threshold_name in spec.thresholds, (cid, a.threshold_name)
            if a.run is not None:  # a shipped run: its verdict is the stored one (recomputed below)
                res = (stored.get(cid) or {}).get("results", {}).get(a.run)
                j["verdict"] = res["outcome"] if res else None
        about = [(a, j) for a, j in judged if a.about]
        verdicts = [_verdict(str(j["verdict"] or "")) for _, j in about]
        if v.status == "validated":  # a number (printed, or measured on a file that does not ship, as the catalogue
            # records it) is judged here against the threshold in force, so it counts as checked evidence
            assert any(ok and (a.shipped or a.threshold_name is not None) for (a, _), ok in zip(about, verdicts)), \
                f"{cid}: validated, but no shipped artifact or number it is about passes"
            assert False not in verdicts, f"{cid}: validated, but an artifact it is about fails"
        if v.status == "contradicted":
            assert False in verdicts, f"{cid}: contradicted, but no artifact it is about fails"


def test_a_printed_number_is_judged_against_the_threshold_in_force():
    """Moving a final-model threshold past the paper's own number shows in the artifact's verdict."""
    spec = _claims()["neurons_cluster_by_single_frequency"]
    paper = next(a for a in spec.validation.artifacts if a.about)
    assert paper.judged(spec.thresholds)["verdict"] == "passed"  # 0.846 ≥ 0.75
    assert paper.judged({"min_assigned_share": {"value": 0.9}})["verdict"] == "failed"
    wd01 = next(a for a in spec.validation.artifacts if not a.about)
    assert not wd01.shipped and wd01.judged(spec.thresholds)["verdict"] == "failed"  # 0.36: not the mainline


def test_the_stored_reference_runs_are_of_every_rules_current_version():
    from claimlens.families import rule_version
    from claimlens.report.references import load

    stored = load()["claims"]
    stale = {cid: (stored.get(cid, {}).get("rule_version"), rule_version(cid, spec.family))
             for cid, spec in _claims().items()
             if stored.get(cid, {}).get("rule_version") != rule_version(cid, spec.family)}
    assert not stale, (f"rules changed since the reference runs were stored (claim: (stored, current)): {stale}; "
                       f"regenerate them with scripts/reference_runs.sh")


def test_a_rule_version_follows_the_rule_and_its_thresholds_not_its_docs():
    from claimlens.families import index_rules

    source = '''
from claimlens.core.verdicts import ClaimSpec, Threshold as T, Verdict
SPEC = ClaimSpec(id="c", statement="s", source="x", thresholds={"a": T(1.0, "why")}, validation="v")
def helper(x):
    return x + 1
@SPEC.rule
def rule(x, th):
    """doc"""
    v = Verdict()
    v.check("x", helper(x), ">=", th["a"])
    return v
'''
    base = index_rules(source)["c"]
    assert base[0] == {"rule"}
    same = [source.replace('"""doc"""', '"""other doc"""'), source.replace('"why"', '"another reason"'),
            source.replace('validation="v"', 'validation="w"')]
    changed = [source.replace("T(1.0", "T(2.0"), source.replace("x + 1", "x + 2"),
               source.replace('">="', '">"')]
    assert all(index_rules(s)["c"][1] == base[1] for s in same)
    assert all(index_rules(s)["c"][1] != base[1] for s in changed)


@pytest.fixture(scope="module")
def artifact_session(tmp_path_factory):
    """One session of every claim on the shipped artifacts (the digitised curves and fraction sweep, Models A and B,
    the sweep tables), as scripts/reference_runs.sh judges them: its claims.json."""
    import os
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("artifacts")
    env = {**os.environ, "CLAIMLENS_CACHE_DIR": str(out / "cache"), "CI": "1"}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "claims"), "-q", "-p", "no:cacheprovider", "--rootdir",
           str(ROOT), "--claims-report", str(out / "report")]
    for run in SHIPPED_RUNS:
        cmd += ["--run", run]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report" / "claims.json").read_text()), out / "report"


def test_every_shipped_artifact_verdict_is_recomputed_and_agrees_with_the_status(artifact_session):
    """A claim validated on a shipped run passes there, one contradicted fails there, and the outcome and key value
    equal the stored reference data (so a rule changed to fail on its source's own data fails here)."""
    from claimlens.report.references import load, summarise

    doc, _ = artifact_session
    stored = load()["claims"]
    by = {}
    for r in doc["records"]:
        if r.get("claim_id"):
            by.setdefault((r["claim_id"], r["run"]), []).append(r)
    checked = 0
    for cid, spec in _claims().items():
        for a in spec.validation.artifacts:
            if a.run is None:
                continue
            now = summarise(by[(cid, a.run)])
            if a.about and spec.validation.status == "validated":
                assert _verdict(now["outcome"]) is True, f"{cid} on {a.run}: {now['outcome']} ({now['reason'] or now['key']})"
            if a.about and spec.validation.status == "contradicted" and _verdict(
                    stored[cid]["results"][a.run]["outcome"]) is False:
                assert _verdict(now["outcome"]) is False, f"{cid} on {a.run}: {now['outcome']}"
            then = stored[cid]["results"][a.run]
            assert now["outcome"] == then["outcome"], (cid, a.run)
            if then.get("key"):
                assert now["key"]["name"] == then["key"]["name"], (cid, a.run)
                assert now["key"]["value"] == pytest.approx(then["key"]["value"], rel=1e-6, abs=1e-12), (cid, a.run)
            checked += 1
    assert checked >= 15


def test_each_record_carries_its_validation_and_the_reference_runs(artifact_session):
    doc, report = artifact_session
    assert doc["schema_version"] == 5
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "src" / "claimlens" / "report" / "schema.json").read_text())
    jsonschema.validate(doc, schema)
    gs = next(r for r in doc["records"] if r["claim_id"] == "pizza_clock_gradient_symmetricity"
              and r["run"] == "zhong2023_model_a")
    v = gs["validation"]
    assert v["status"] == "validated" and v["scope"]
    a = next(x for x in v["artifacts"] if x["run"] == "zhong2023_model_a")
    assert a["shipped"] and a["verdict"] == "passed" and a["value"] == pytest.approx(0.99369, abs=1e-4)
    ref = gs["reference"]
    assert ref["current"] and ref["key"]["value"] == pytest.approx(0.99369, abs=1e-4)
    values = {r["label"]: r["value"] for r in ref["runs"]}
    assert values["zhong2023_model_a"] == pytest.approx(0.99369, abs=1e-4)
    assert any(label not in SHIPPED_RUNS and isinstance(x, float) and math.isfinite(x) for label, x in values.items())
    assert ref["sentence"].startswith("Validated on")
    mode = next(r for r in doc["records"] if r["claim_id"] == "pizza_doubles_fourier_mode"
                and r["run"] == "zhong2023_model_a")
    assert mode["outcome"] == "failed" and mode["validation"]["status"] == "contradicted"
    assert "expected finding" in mode["reference"]["sentence"]
    html = (report / "claims.html").read_text()
    assert "class=strip" in html and "contradicted" in html and "key check" in html


@pytest.mark.parametrize("status,outcome,expected", [
    ("validated", "failed", "a failure here is a finding about this run"),
    ("validated", "passed", "this run agrees"),
    ("contradicted", "failed", "the expected finding"),
    ("contradicted", "passed", "a pass here does not vouch for the rule"),
    ("unvalidated", "failed", "may be the rule's as much as the run's"),
    ("validated", "skipped", "Not judged on this run; the rule is validated on A"),
    ("contradicted", "error", "Not judged on this run; the rule is contradicted by B"),
])
def test_the_sentence_says_what_the_outcome_means_given_the_status(status, outcome, expected):
    from types import SimpleNamespace

    from claimlens.report.references import sentence

    artifacts = [{"name": "A", "about": True, "verdict": "passed"}, {"name": "B", "about": True, "verdict": "failed"}]
    if status == "validated":
        artifacts = artifacts[:1]
    text = sentence(SimpleNamespace(id="x", kind="empirical"), {"status": status, "scope": "s", "artifacts": artifacts},
                    outcome, None, False)
    assert expected in text, text


def test_an_informational_claim_quotes_no_pass_counts_of_the_reference_runs():
    """Its "passed" only means recorded: "passes on 3 of 3" would read as a replication."""
    from claimlens.report.references import load, sentence

    spec = _claims()["mlp_long_training_spikes"]
    assert spec.kind == "informational"
    stored = load()["claims"][spec.id]
    text = sentence(spec, {"status": "not_applicable", "scope": "s", "artifacts": []}, "passed", stored, True)
    assert text == "Informational: no pass rule.", text
    gs = _claims()["pizza_clock_gradient_symmetricity"]
    text = sentence(gs, {"status": "validated", "scope": "s", "artifacts": []}, "passed",
                    load()["claims"][gs.id], True)
    assert "Reference runs: passes on" in text, text


def test_a_two_sided_claim_counts_the_reference_runs_of_its_own_side():
    """The mode test on a pizza counts pizza-side runs, not the default seeds judged on the clock side."""
    from claimlens.report.references import load, population_summary

    cid = "pizza_doubles_fourier_mode"
    stored = load()["claims"][cid]["results"]
    pizza = "pre-unembed mode magnitude at 2k over that at k (pizza side)"
    clock = pizza.replace("pizza side", "clock side")
    assert clock in stored["default"]["checks"] and pizza in stored["pizza"]["checks"]
    assert "default recipe's seeds" in population_summary(cid)
    mine = population_summary(cid, pizza)
    assert "default recipe's seeds" not in mine and "fails on pizza" in mine, mine
    assert "passes on 3 of 3 of the default recipe's seeds" in population_summary(cid, clock)

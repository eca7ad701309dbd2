"""Baseline gating, diff and merge: golden-value behaviour on claim reports."""

import json

import pytest

from claimlens.cli import main
from claimlens.report.compare import diff
from claimlens.report.document import merge

pytest_plugins = ["pytester"]

CLAIMS = '''
import os
import pytest
from claimlens import Verdict

@pytest.mark.claim(id="stable", statement="s", source="src")
def test_stable(claim):
    end = float(os.environ.get("LOSS_END", "0.01"))
    claim.chart("loss", [0, 10, 20], [1.0, 0.1, end], log=True)
    assert end < 0.1, f"loss at the last epoch: measured {end}, threshold < 0.1"

@pytest.mark.claim(id="flippy", statement="f", source="src")
def test_flippy(claim):
    value = float(os.environ.get("FLIPPY", "1.0"))
    v = Verdict()
    v.check("value", value, ">=", 0.5)
    claim.judge(v)
    assert value >= 0.5, f"value: measured {value}, threshold >= 0.5"
'''


def run(pytester, monkeypatch, *args, flippy="1.0", loss_end="0.01"):
    monkeypatch.setenv("FLIPPY", flippy)
    monkeypatch.setenv("LOSS_END", loss_end)
    return pytester.runpytest_subprocess("--claims-report", "rep", "-p", "no:cacheprovider", *args)


def test_first_run_records_then_flips_are_listed_and_gate(pytester, monkeypatch):
    pytester.makepyfile(test_claims=CLAIMS)
    first = run(pytester, monkeypatch, "--claims-baseline", "base.json")
    first.stdout.fnmatch_lines(["*claimlens: baseline recorded in*base.json*"])
    assert first.ret == 0 and (pytester.path / "base.json").exists()

    second = run(pytester, monkeypatch, "--claims-baseline", "base.json", flippy="0.1", loss_end="1e-4")
    second.stdout.fnmatch_lines([
        "*claims baseline: 1 flipped, 0 added, 0 removed, 2 measured values moved beyond tolerance*",
        "*FLIP passed -> failed: test_claims.py::test_flippy*",
        "*move 2 (orders of magnitude*at epoch 20: loss*",
    ])
    assert second.ret == 1
    doc = json.loads((pytester.path / "rep" / "claims.json").read_text())
    assert doc["baseline_diff"]["flips"][0]["nodeid"] == "test_claims.py::test_flippy"
    assert "Against the baseline" in (pytester.path / "rep" / "claims.html").read_text()


def test_fail_on_flips_only_and_tolerances(pytester, monkeypatch):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester, monkeypatch, "--claims-baseline", "base.json", flippy="0.1")  # baseline with a failing claim
    same = run(pytester, monkeypatch, "--claims-baseline", "base.json", "--claims-fail-on", "flips", flippy="0.2")
    assert same.ret == 0, "a claim that already failed in the baseline does not fail the session in flips mode"
    same.stdout.fnmatch_lines(["*claims baseline: 0 flipped*"])
    loose = run(pytester, monkeypatch, "--claims-baseline", "base.json", "--claims-tolerance", "value=2",
                flippy="0.2")
    loose.stdout.fnmatch_lines(["*0 flipped, 0 added, 0 removed, 0 measured values moved beyond tolerance*"])
    bad = run(pytester, monkeypatch, "--claims-fail-on", "flips")
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["*--claims-fail-on flips needs --claims-baseline FILE*"])


def test_update_accepts_the_new_values(pytester, monkeypatch):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester, monkeypatch, "--claims-baseline", "base.json")
    run(pytester, monkeypatch, "--claims-baseline", "base.json", "--claims-baseline-update", flippy="0.1")
    again = run(pytester, monkeypatch, "--claims-baseline", "base.json", flippy="0.1")
    again.stdout.fnmatch_lines(["*claims baseline: 0 flipped*"])


def record(nodeid, outcome, value=1.0, run="r"):
    return {"nodeid": nodeid, "claim_id": nodeid, "statement": "", "source": "", "run": run, "parameters": {"run": run},
            "outcome": outcome, "message": None, "duration": 0.1, "phases": {}, "notes": [],
            "series": [{"name": "s", "label": "", "epochs": [0, 1], "values": [1.0, value], "log_scale": False}],
            "measurements": [{"name": "m", "value": value, "threshold": None, "op": None, "epoch": None, "label": "",
                              "passed": None}]}


def doc(*records, label="r"):
    return {"schema_version": 1, "runs": [{"label": label, "kind": "run", "path": label, "content_hash": label * 64}],
            "records": list(records), "summary": {}}


def test_diff_added_removed_and_moves():
    d = diff(doc(record("a", "passed"), record("b", "passed", 1.0)),
             doc(record("b", "failed", 1.2), record("c", "passed")), rtol=0.1)
    assert d["added"] == ["c"] and d["removed"] == ["a"]
    # a passed claim that is not judged any more is a flip too ("missing")
    assert [(f["nodeid"], f["from"], f["to"]) for f in d["flips"]] == [("b", "passed", "failed"),
                                                                        ("a", "passed", "missing")]
    assert {(m["kind"], round(m["relative_change"], 3)) for m in d["moves_beyond_tolerance"]} == {
        ("measurement", 0.2), ("series", 0.2)}


def test_a_test_moved_to_another_claims_file_is_the_same_test():
    """A baseline from before the claims were gathered one file per family (test_progress_measures.py merged into
    test_grokking.py) compares test by test: no flip, nothing added or removed; a real flip still shows."""
    def moved(path, outcome, value=1.0):
        r = record(f"claims/{path}::test_x[run=r]", outcome, value)
        return {**r, "claim_id": "claim_x"}

    d = diff(doc(moved("test_progress_measures.py", "passed"), record("claims/test_a.py::test_y[run=r]", "passed")),
             doc(moved("test_grokking.py", "passed", 1.5), record("claims/test_a.py::test_y[run=r]", "failed")))
    assert d["added"] == [] and d["removed"] == []
    assert [(f["nodeid"], f["to"]) for f in d["flips"]] == [("claims/test_a.py::test_y[run=r]", "failed")]
    assert any(m["nodeid"] == "claims/test_grokking.py::test_x[run=r]" for m in d["moves_beyond_tolerance"])


def test_the_terminal_lists_no_unmoved_values_orders_epochs_as_numbers_and_bounds_the_flips():
    from claimlens.report.compare import FLIPS_SHOWN, format_diff

    same = diff(doc(record("a", "passed", 0.2107)), doc(record("a", "passed", 0.2107)))
    assert same["largest_moves"] == [] and same["moves_beyond_tolerance"] == []
    epochs = [5, 100, 1000, 20]
    old = doc(*[record(f"t[run=r-epoch={e}]", "passed") for e in epochs])
    new = doc(*[record(f"t[run=r-epoch={e}]", "failed") for e in epochs])
    assert [f["nodeid"] for f in diff(old, new)["flips"]] == [f"t[run=r-epoch={e}]" for e in sorted(epochs)]
    many = diff(doc(*[record(f"t{i}", "passed") for i in range(FLIPS_SHOWN + 5)]),
                doc(*[record(f"t{i}", "error") for i in range(FLIPS_SHOWN + 5)]))
    lines = format_diff(many)
    assert sum(line.startswith("  FLIP passed -> error") for line in lines) == FLIPS_SHOWN
    assert any("… and 5 more flips" in line for line in lines)
    assert sum("FLIP" in line for line in format_diff(many, flips_shown=None)) == FLIPS_SHOWN + 5


def test_merge_and_cli(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(doc(record("x[run=r1]", "passed", run="r1"), label="r1")))
    b.write_text(json.dumps(doc(record("x[run=r2]", "failed", run="r2"), label="r2")))
    merged = merge([json.loads(a.read_text()), json.loads(b.read_text())])
    assert [r["label"] for r in merged["runs"]] == ["r1", "r2"] and merged["summary"]["failed"] == 1
    with pytest.raises(ValueError, match="share test ids"):
        merge([json.loads(a.read_text()), json.loads(a.read_text())])
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m.json")]) == 0
    page = (tmp_path / "m.html").read_text()
    assert "<th>claim</th><th>r1</th><th>r2</th>" in page  # the claim × run matrix
    assert main(["diff", str(a), str(a)]) == 0
    assert "0 flipped" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["diff", str(bad), str(a)]) == 2


def test_a_changed_threshold_is_named_next_to_the_flips():
    def doc(overrides):  # each record states the thresholds it was judged by and their defaults (schema ≥ 2)
        value = (overrides or {}).get("grokking_delayed_generalisation", {}).get("delay_ratio", 5)
        record = {"nodeid": "t::a", "claim_id": "grokking_delayed_generalisation", "outcome": "passed",
                  "measurements": [], "series": [],
                  "thresholds": {"delay_ratio": {"value": value, "default": 5, "source": 5, "why": ""}}}
        return {"records": [record], **({"threshold_overrides": overrides} if overrides else {})}

    d = diff(doc(None), doc({"grokking_delayed_generalisation": {"delay_ratio": 10}}))
    assert d["threshold_changes"] == [{"claim_id": "grokking_delayed_generalisation", "name": "delay_ratio",
                                       "old": 5, "new": 10}]
    from claimlens.report.compare import format_diff

    assert any("threshold changed: grokking_delayed_generalisation.delay_ratio 5 -> 10" in line
               for line in format_diff(d))
    same = {"grokking_delayed_generalisation": {"delay_ratio": 5}}  # an override equal to the default
    assert diff(doc(None), doc(same))["threshold_changes"] == []


def test_reports_compare_from_what_they_hold_without_the_claims_code(monkeypatch):
    """The defaults come from the documents (threshold_defaults, the records' thresholds), not from the rules of the
    claimlens at hand; a report that records no default reads it as None."""
    import sys

    for name in [m for m in sys.modules if m == "claimlens.thresholds" or m.startswith("claimlens.families")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "claimlens.families", None)  # importing any rule now fails
    monkeypatch.setitem(sys.modules, "claimlens.thresholds", None)
    record = {"nodeid": "t::a", "claim_id": "c", "outcome": "failed", "measurements": [], "series": []}
    old = {"records": [{**record, "outcome": "passed"}]}
    new = {"records": [record], "threshold_overrides": {"c": {"x": 0.1, "y": 2.0}},
           "threshold_defaults": {"c": {"x": 0.5, "y": 2.0}}}
    d = diff(old, new)
    assert d["threshold_changes"] == [{"claim_id": "c", "name": "x", "old": 0.5, "new": 0.1}]  # y: its default
    assert [f["to"] for f in d["flips"]] == ["failed"]
    older = {"records": [record], "threshold_overrides": {"c": {"x": 0.1}}}  # no defaults recorded anywhere
    assert diff(old, older)["threshold_changes"] == [{"claim_id": "c", "name": "x", "old": None, "new": 0.1}]

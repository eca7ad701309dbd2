"""A session never lies (issue: robust records, merges, CI gates): odd values never cost the report, a test whose
process dies is an error record, a claim that is no longer judged counts as a flip, merges do not depend on
argument order."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimlens.core.jsonable import jsonable
from claimlens.report.compare import diff
from claimlens.report.document import merge, over_seeds

pytest_plugins = ["pytester"]

USER_CLAIMS = '''
from decimal import Decimal

import numpy as np
import pytest
import torch
from claimlens import Verdict


@pytest.mark.claim(id="np_param", statement="parametrized over numpy values", source="user")
@pytest.mark.parametrize("k", list(np.arange(2, 3)))
def test_numpy_parameter(k, claim):
    v = Verdict()
    v.record("k", np.int64(k))
    claim.judge(v)
    assert k == 2


@pytest.mark.claim(id="tensor_epoch", statement="epoch taken from a tensor", source="user")
def test_tensor_epoch(claim):
    epochs = torch.tensor([0, 100, 200])
    v = Verdict()
    v.check("loss at the end", torch.tensor(0.01), "<=", 0.1, epoch=epochs[-1])
    claim.judge(v)


@pytest.mark.claim(id="decimal_value", statement="a Decimal measurement", source="user")
def test_decimal_value(claim):
    v = Verdict()
    v.record("lr", Decimal("0.001"))
    claim.judge(v)


@pytest.mark.claim(id="nan_param", statement="parametrized over a NaN threshold", source="user")
@pytest.mark.parametrize("tol", [float("nan")])
def test_nan_parameter(tol, claim):
    claim.note(f"tolerance {tol}")
    v = Verdict()
    v.record("a nan", float("nan"))
    claim.judge(v)
'''


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_odd_values_in_records_never_cost_the_report(pytester, tmp_path, xdist):
    """E2-12: numpy, tensor, Decimal and NaN values in user claims; every test passes and claims.json holds them
    coerced (numbers to numbers, non-finite to null)."""
    pytester.makepyfile(test_user_claims=USER_CLAIMS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--claims-report", str(tmp_path), *xdist)
    assert result.ret == 0, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    doc = json.loads((tmp_path / "claims.json").read_text())
    by_id = {r["claim_id"]: r for r in doc["records"]}
    assert set(by_id) == {"np_param", "tensor_epoch", "decimal_value", "nan_param"}
    assert by_id["np_param"]["parameters"] == {"k": 2} and by_id["np_param"]["measurements"][0]["value"] == 2
    loss = by_id["tensor_epoch"]["measurements"][0]
    assert loss["epoch"] == 200 and loss["value"] == pytest.approx(0.01) and loss["passed"] is True
    assert by_id["decimal_value"]["measurements"][0]["value"] == pytest.approx(0.001)
    assert by_id["nan_param"]["parameters"] == {"tol": None} and by_id["nan_param"]["measurements"][0]["value"] is None


def test_jsonable_coerces_everything():
    import decimal

    import numpy as np
    import torch

    value = {1: np.float32(0.5), "t": torch.tensor([1.0, float("inf")]), "d": decimal.Decimal("2.5"),
             "o": object(), "n": float("nan"), "tup": (np.int64(3),)}
    out = jsonable(value)
    json.dumps(out, allow_nan=False)
    assert out["1"] == 0.5 and out["t"] == [1.0, 1e308] and out["d"] == 2.5 and out["n"] is None
    assert out["tup"] == [3] and out["o"].startswith("<object object")


CRASHING = '''
import os

import pytest
from claimlens import Verdict


@pytest.mark.claim(id="fine", statement="holds", source="test")
def test_fine(claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)


@pytest.mark.claim(id="dies", statement="its process dies", source="test")
def test_dies(claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)
    os._exit(3)
'''


def test_a_claim_that_kills_its_worker_is_an_error_record_and_a_flip(pytester, tmp_path):
    """The worker running a claim dies: the claim gets an error record (no verdict) saying so, the session fails,
    and against a baseline where it passed it counts as a flip even with --claims-fail-on flips."""
    pytester.makepyfile(test_crash=CRASHING)
    baseline = tmp_path / "baseline.json"
    doc = {"records": [{"nodeid": "test_crash.py::test_dies", "claim_id": "dies", "outcome": "passed",
                        "measurements": [], "series": []},
                       {"nodeid": "test_crash.py::test_fine", "claim_id": "fine", "outcome": "passed",
                        "measurements": [], "series": []}]}
    baseline.write_text(json.dumps(doc))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--rootdir", str(pytester.path),
                                           "--claims-report", str(tmp_path / "r"),
                                           "--claims-baseline", str(baseline), "--claims-fail-on", "flips")
    assert result.ret == 1
    records = {r["nodeid"]: r for r in json.loads((tmp_path / "r" / "claims.json").read_text())["records"]}
    dead = records["test_crash.py::test_dies"]
    assert dead["outcome"] == "error" and "died before it reported" in dead["message"]
    assert records["test_crash.py::test_fine"]["outcome"] == "passed"
    result.stdout.fnmatch_lines(["*FLIP passed -> error: test_crash.py::test_dies*"])


def test_fail_on_flips_never_lowers_a_status_it_did_not_judge(pytester, tmp_path):
    """A claim that failed in the baseline too does not fail the gate; an error in a fixture, or a failing test
    that is not a claim, still does."""
    pytester.makepyfile(test_mixed='''
import pytest
from claimlens import Verdict

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

@pytest.mark.claim(id="old_failure", statement="failed before too", source="test")
def test_old_failure(claim):
    v = Verdict()
    v.check("x", 0, ">=", 1)
    claim.judge(v)

def test_plain_failure():
    assert False
''')
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"records": [{"nodeid": "test_mixed.py::test_old_failure", "outcome": "failed",
                                                 "claim_id": "old_failure", "measurements": [], "series": []}]}))
    args = ["-p", "no:cacheprovider", "--rootdir", str(pytester.path), "--claims-report", str(tmp_path / "r"),
            "--claims-baseline", str(baseline),
            "--claims-fail-on", "flips"]
    assert pytester.runpytest_subprocess(*args, "-k", "old_failure").ret == 0
    assert pytester.runpytest_subprocess(*args).ret == 1, "a failing non-claim test is never waved through"


UNJUDGED_CLAIMS = '''
import pytest

from claimlens import Verdict
from claimlens.errors import CheckpointError


@pytest.fixture
def unreadable():
    raise CheckpointError("checkpoints/epoch_0000010.safetensors is not a readable safetensors file")


@pytest.mark.claim(id="setup_error", statement="its fixture meets a bad checkpoint", source="test")
def test_setup_error(unreadable, claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)


@pytest.mark.claim(id="body_error", statement="its body meets a bad checkpoint", source="test")
def test_body_error(claim):
    raise CheckpointError("run 'r', epoch 10: not a readable safetensors file")


@pytest.mark.claim(id="crash", statement="its body has a bug", source="test")
def test_crash(claim):
    None + 1


@pytest.mark.claim(id="refuted", statement="a check fails", source="test")
def test_refuted(claim):
    v = Verdict()
    v.check("x", 0, ">=", 1)
    claim.judge(v)


@pytest.mark.claim(id="plain_assert", statement="an assert fails", source="test")
def test_plain_assert(claim):
    assert 0 >= 1, "x = 0, threshold >= 1"


@pytest.mark.claim(id="holds", statement="a check passes", source="test")
def test_holds(claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)
'''


def test_a_claim_that_could_not_be_judged_is_an_error_not_a_failed_verdict(pytester, tmp_path):
    """'failed' is a verdict (the claim did not hold); a bad input met in a fixture or in the body, or a crash, is
    'error' (no verdict), with the message alone, and is counted apart in the summary, the terminal and the HTML."""
    pytester.makepyfile(test_unjudged=UNJUDGED_CLAIMS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--rootdir", str(pytester.path),
                                           "--claims-report", str(tmp_path / "r"))
    assert result.ret == 1
    doc = json.loads((tmp_path / "r" / "claims.json").read_text())
    outcome = {r["claim_id"]: r["outcome"] for r in doc["records"]}
    assert outcome == {"setup_error": "error", "body_error": "error", "crash": "error", "refuted": "failed",
                       "plain_assert": "failed", "holds": "passed"}
    assert doc["summary"] == {"passed": 1, "failed": 2, "error": 3, "skipped": 0}
    message = {r["claim_id"]: r["message"] for r in doc["records"]}
    assert message["body_error"] == "run 'r', epoch 10: not a readable safetensors file"  # as raised, no prefix
    assert message["setup_error"].startswith("checkpoints/epoch_0000010.safetensors is not a readable")
    assert "NoneType" in message["crash"]
    body = result.stdout.str().split("test_body_error")[1].split("test_crash")[0]
    assert "raise CheckpointError" not in body and "During handling of the above exception" not in body
    result.stdout.fnmatch_lines(["claimlens: 6 claim records (1 passed, 2 failed, 3 error) written to*",
                                 "claimlens: 3 claims could not be judged (error: *what to fix:",
                                 "  1 × *"])
    result.stdout.fnmatch_lines(["ERROR test_unjudged.py::test_body_error*", "ERROR test_unjudged.py::test_crash*",
                                 "*2 failed, 1 passed, 3 errors*"])
    page = (tmp_path / "r" / "claims.html").read_text()
    assert '<span class="badge error">3 error</span>' in page and 'type=checkbox value="error"' in page


def test_a_claim_that_passed_and_now_errors_is_a_flip_and_errors_never_make_a_claim_reproduced():
    old = {"records": [{"nodeid": "a", "outcome": "passed", "measurements": [], "series": []},
                       {"nodeid": "b", "outcome": "failed", "measurements": [], "series": []}]}
    new = {"records": [{"nodeid": "a", "outcome": "error", "measurements": [], "series": []},
                       {"nodeid": "b", "outcome": "error", "measurements": [], "series": []}]}
    assert [(f["nodeid"], f["from"], f["to"]) for f in diff(old, new)["flips"]] == [("a", "passed", "error")]
    spec = {"task": {"p": 23}, "model": {}, "train": {}}
    runs = [{"label": f"s{i}", "kind": "run", "spec": {**spec, "train": {"seed": i}}} for i in range(3)]
    records = [{"nodeid": f"c[s{i}]", "claim_id": "c", "run": f"s{i}", "outcome": o}
               for i, o in enumerate(["passed", "error", "error"])]
    (seeds,) = over_seeds(records, runs)
    assert (seeds["k"], seeds["n"], seeds["reproduced"]) == (1, 3, False)
    assert seeds["errors_on"] == ["s1", "s2"] and seeds["fails_on"] == []


def test_a_claim_passed_in_the_baseline_and_missing_now_is_a_flip():
    old = {"records": [{"nodeid": "a", "outcome": "passed", "measurements": [], "series": []},
                       {"nodeid": "b", "outcome": "failed", "measurements": [], "series": []}]}
    d = diff(old, {"records": []})
    assert [(f["nodeid"], f["to"]) for f in d["flips"]] == [("a", "missing")]
    assert d["removed"] == ["a", "b"]


def _doc(label, commit, overrides, values, created):
    return {"schema_version": 3, "created": created, "versions": {"python": "3.11", "claimlens": commit},
            "machine": {"platform": label}, "git_commit": commit,
            "runs": [{"label": label, "kind": "run", "path": label, "content_hash": commit * 8}],
            **({"threshold_overrides": overrides} if overrides else {}),
            "records": [{"nodeid": f"t::c[run={label}]", "claim_id": "c", "run": label, "outcome": "passed",
                         "thresholds": {"x": {"value": values}}, "measurements": [], "series": []}],
            "summary": {}}


@settings(max_examples=30)
@given(st.permutations([0, 1, 2]))
def test_merge_does_not_depend_on_the_order_of_its_inputs(order):
    docs = [_doc("a", "11111111", {"c": {"x": 0.1}}, 0.1, "2026-11-01T00:00:00+00:00"),
            _doc("b", "22222222", None, 0.05, "2026-11-02T00:00:00+00:00"),
            _doc("c", "33333333", None, 0.05, "2026-11-03T00:00:00+00:00")]
    merged = merge([docs[i] for i in order])
    assert merged == merge(docs)
    assert [r["label"] for r in merged["runs"]] == ["a", "b", "c"]
    assert merged["runs"][0]["judged"]["threshold_overrides"] == {"c": {"x": 0.1}}
    assert merged["runs"][1]["judged"]["git_commit"] == "22222222" and merged["git_commit"] is None
    assert "threshold_overrides" not in merged, "not every input was judged by the override"
    assert merged["threshold_conflicts"] == [{"claim_id": "c", "name": "x",
                                              "values": {"a": 0.1, "b": 0.05, "c": 0.05}}]
    assert merged["created"] == "2026-11-03T00:00:00+00:00" and merged["versions"] == {"python": "3.11"}


def test_two_merges_of_the_same_inputs_diff_to_nothing():
    docs = [_doc("a", "11111111", {"c": {"x": 0.1}}, 0.1, "2026-11-01"), _doc("b", "22222222", None, 0.05, "2026-11-02")]
    for a, b in itertools.permutations(docs):
        d = diff(merge([a, b]), merge([b, a]))
        assert not d["threshold_changes"] and not d["flips"]

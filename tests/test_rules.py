"""Verdicts: every check kept, failures listed together in assert_close style, sources and margins recorded."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimlens.core.verdicts import Bound, ClaimSpec, Threshold, Verdict


def test_every_check_is_kept_and_every_failure_listed():
    v = Verdict("c")
    assert not v.check("test acc", 0.42, ">=", 0.99, epoch=2500, label="run=x")
    assert v.check("delay ratio", 12, ">=", 5)
    assert not v.check("grokking epoch", None, "<=", 2000, missing="test accuracy never reached 0.95")
    v.record("keys", [1, 7])
    v.not_judged("random-direction control", "needs weights")
    assert not v.passed and len(v.checks) == 5 and len(v.failures) == 2
    message = v.failure_message()
    assert message.splitlines()[0] == "2 of 3 checks failed:"
    assert "test acc: measured 0.42, threshold >= 0.99 (epoch 2500, run=x)" in message
    assert "grokking epoch: test accuracy never reached 0.95" in message
    assert "delay ratio" not in message and "random-direction" not in message


def test_a_single_failure_reads_like_assert_close_and_details_stay_out_of_the_name():
    v = Verdict()
    v.check("lead (epochs)", 300, ">=", 500, detail="restricted at 700, test at 1000")
    assert v.failure_message() == "lead (epochs) [restricted at 700, test at 1000]: measured 300, threshold >= 500"
    assert v.checks[0].name == "lead (epochs)", "a stable name: baselines match checks by name"


def test_a_bound_threshold_records_its_name_source_and_margin():
    v = Verdict()
    v.check("rise", 1.6, ">=", Bound(1.0, "min_log10_rise", 1.6))
    c = v.checks[0].to_dict()
    assert c["source_value"] == 1.6 and c["threshold_name"] == "min_log10_rise" and c["margin"] == 1.6
    assert c["status"] == "passed" and c["passed"] is True


def test_nan_never_passes_and_unknown_ops_are_refused():
    v = Verdict()
    assert not v.check("x", float("nan"), "<=", 1)
    with pytest.raises(ValueError, match="op '=>' is not one of"):
        v.check("x", 1, "=>", 1)


def test_skip_and_extend():
    inner = Verdict().skip("needs ≥ 10 checkpoints")
    outer = Verdict().extend(inner)
    assert outer.skipped == "needs ≥ 10 checkpoints" and not outer.passed


def test_specs_know_their_kind():
    with pytest.raises(ValueError, match="kind 'guess' is not one of"):
        ClaimSpec("x", "s", "src", kind="guess")
    spec = ClaimSpec("x", "s", "src", kind="identity", thresholds={"t": Threshold(1e-6, "float64 rounding")})
    assert spec.thresholds["t"].source is None


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.sampled_from([">=", "<=", ">", "<"]), st.floats(-1e6, 1e6)),
                max_size=8))
def test_a_verdict_passes_exactly_when_each_check_holds(checks):
    v = Verdict()
    expected = True
    for value, op, threshold in checks:
        ok = {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}[op]
        assert v.check("c", value, op, threshold) == ok
        expected &= ok
    assert v.passed == expected and len(v.failures) == sum(not c.status == "passed" for c in v.checks)

"""Every entry point, fed bad inputs, ends with a clear one-line error and its documented exit status; no
traceback from inside torch; nothing written before is lost (cases: tests/battery.py)."""

import pytest
from battery import CASES, run_case


@pytest.mark.parametrize("case", CASES, ids=[f"{c.entry}: {c.input}" for c in CASES])
def test_bad_input(case, tiny_run, tmp_path):
    outcome = run_case(case, tmp_path, tiny_run)
    detail = f"\n--- output ---\n{outcome.output[-3000:]}"
    assert outcome.status == case.exit, f"exit {outcome.status}, expected {case.exit}{detail}"
    assert outcome.clear, f"the error does not say {case.message!r}{detail}"
    assert not outcome.traceback, f"a traceback reached the user{detail}"
    assert not outcome.lost, f"lost or half-written: {outcome.lost}{detail}"

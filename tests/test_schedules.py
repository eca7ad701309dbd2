"""A verdict must not depend on how often the user saved, beyond what the checkpoints can resolve.

The built-in default run (126 checkpoints, every 20 epochs) is imported again on sparser and uneven schedules
(:mod:`tests.schedules`), as a user who saved less often would have it, and its trajectory claims judged: no check
that passes on the full run fails on a subsample (a check the spacing cannot decide is *not judged*, with the spacing
it needed), nothing crashes, and what the checkpoints still resolve is still judged. The LLC claims are left out
(minutes of sampling per schedule), and so is ``gradient_updates_are_low_rank``: its statistic is a count over the
sampled checkpoints, which the number of checkpoints changes (see the note in ``SCHEDULE_SENSITIVE``)."""

import json
import re

import pytest

from conftest import ROOT
from tests.schedules import schedules, subsample

# gradient_updates_are_low_rank counts singular values among the sampled steps against a column-permuted null: with
# fewer sampled checkpoints the null's count falls with them while the run's does not, so the ratio depends on the
# number of samples, not on resolving an event. Revision 3's centred rule keeps this: on the default run the centred
# count is 12, 10, 11 at every 1st, 2nd, 4th checkpoint against nulls of 125, 62, 31 (the verdict records the
# subsampled ratios).
SCHEDULE_SENSITIVE = {"gradient_updates_are_low_rank"}
FAMILIES = ("test_grokking.py", "test_lowrank.py")


def _judge(run, report):
    """Judge ``run``'s grokking and low-rank claims in a session of its own; (its output, records by test)."""
    import os
    import subprocess
    import sys

    paths = [str(ROOT / "claims" / f) for f in FAMILIES]
    result = subprocess.run([sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                             "-q", "--run", str(run), "--claims-report", str(report)],
                            capture_output=True, text=True, cwd=report.parent, env={**os.environ}, timeout=1200,
                            check=False)
    doc = json.loads((report / "claims.json").read_text())
    return result.stdout + result.stderr, {_key(r): r for r in doc["records"]
                                           if r["claim_id"] not in SCHEDULE_SENSITIVE}


def _key(record):
    params = {k: v for k, v in record["parameters"].items() if k not in ("run", "epoch")}
    return re.sub(r"\[.*\]", "", record["nodeid"].split("::")[1]) + json.dumps(params, sort_keys=True)


def _checks(record):
    return {m["name"] + m.get("label", ""): m["status"] for m in record.get("measurements", [])
            if m["status"] in ("passed", "failed", "not judged")}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    from claimlens.builtin import builtin_run

    run = builtin_run("default", progress=False)
    tmp = tmp_path_factory.mktemp("schedules")
    _, records = _judge(run.path, tmp / "full-report")
    return run, records, tmp


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["every_10", "log", "late"])
def test_sparser_schedules_flip_no_check_from_passed_to_failed(full, schedule):
    run, reference, tmp = full
    epochs = schedules(run.epochs)[schedule]
    sub = subsample(run, epochs, tmp / f"run-{schedule}")
    output, records = _judge(sub.path, tmp / f"report-{schedule}")
    assert "ZeroDivisionError" not in output
    assert not [k for k, r in records.items() if r["outcome"] == "error"], output[-3000:]
    flips, judged = [], 0
    for key, record in records.items():
        if key not in reference:
            continue
        before, after = _checks(reference[key]), _checks(record)
        judged += sum(status in ("passed", "failed") for status in after.values())
        flips += [f"{key}: {name}" for name, status in after.items()
                  if status == "failed" and before.get(name) == "passed"]
        if reference[key]["outcome"] == "passed":
            assert record["outcome"] in ("passed", "skipped"), (key, record["message"])
    assert not flips, flips
    assert judged >= 20, f"only {judged} checks judged on {len(epochs)} checkpoints"


@pytest.mark.slow
def test_phase_boundaries_on_one_checkpoint_are_not_resolved_never_a_crash(full):
    """Ten checkpoints, nine of them in the first 160 epochs: circuit formation and cleanup end in the one gap
    before the last checkpoint (t2 = t3). The rates over the phase between them divided by zero before; now the
    claims about it are skipped as not resolved, naming the spacing they need."""
    run, _, tmp = full
    sub = subsample(run, [0, 20, 40, 60, 80, 100, 120, 140, 160, run.epochs[-1]], tmp / "run-ends")
    output, records = _judge(sub.path, tmp / "report-ends")
    assert "ZeroDivisionError" not in output
    assert not [k for k, r in records.items() if r["outcome"] == "error"]
    for claim in ("test_weight_norm_falls_in_phases", "test_gini_jumps_in_cleanup", "test_phase_boundaries"):
        record = next(r for k, r in records.items() if k.startswith(claim + "{") or k == claim)
        assert record["outcome"] == "skipped" and "resolution: t2 and t3 fall on the same checkpoint" in \
            record["message"], (claim, record["message"])

"""Claims about sets of runs (catalogue §3.1 'runs'): judged once per run set, over its members.

Run sets come from ``--run SWEEP.toml``, ``--run nanda2022_fractions`` (the source's own training-fraction sweep,
digitised) or, with ``--claims-sweeps``, the built-in sweeps of ``fixtures/sweeps/``. Without any, these tests
skip, saying what running them costs. ``@pytest.mark.run_set_axis(AXIS)`` skips the sets that do not vary AXIS
before they are trained (``-k attention --claims-sweeps`` trains the attention-rate sweep only).
"""

import pytest

from claimlens import Series
from claimlens.families.sets import rules as S


def _losses(run_set, axis):
    """``(value, train_loss, test_loss)`` of every member along ``axis`` (trained runs: their training log;
    curves runs: their curves)."""
    out = []
    for value, run in run_set.along(axis):
        if not run.has_weights:
            out.append((value, run.series["train_loss"], run.series["test_loss"]))
        else:
            log = run.log()
            out.append((value, Series.of("train_loss", log["epoch"], log["train_loss"]),
                        Series.of("test_loss", log["epoch"], log["test_loss"])))
    return out


@pytest.mark.run_set_axis("task.frac_train")
@pytest.mark.claim(S.WEIGHT_DECAY_AND_DATA)
def test_data_fraction_needed(run_set, claim):
    if not run_set.varies("task.frac_train"):
        pytest.skip(f"run set {run_set.name!r} does not vary task.frac_train (its axes: {list(run_set.axes)})")
    claim.judge(S.data_fraction_needed, _losses(run_set, "task.frac_train"))


@pytest.mark.run_set_axis("train.weight_decay")
@pytest.mark.claim(S.WEIGHT_DECAY_AND_DATA)
def test_weight_decay_needed(run_set, claim):
    if not run_set.varies("train.weight_decay"):
        pytest.skip(f"run set {run_set.name!r} does not vary train.weight_decay (its axes: {list(run_set.axes)})")
    claim.judge(S.weight_decay_needed, _losses(run_set, "train.weight_decay"))

"""Grokking: delayed generalisation (Nanda et al. 2023, §3 and Fig. 2).

Claim ids and pass rules follow shared/claims_catalogue.md §3.1.
"""

import pytest

from claimlens.series import Series

SOURCE = "Nanda, Chan, Lieberum, Smith, Steinhardt 2023, 'Progress measures for grokking', §3, Fig. 2"


@pytest.mark.claim(
    id="grokking_delayed_generalisation",
    statement="Train accuracy saturates early; test accuracy stays low for many times longer, then rises to ~100%.",
    source=SOURCE,
)
def test_grokking_delayed_generalisation(run):
    log = run.log()
    if log["epoch"].numel() < 10:
        pytest.skip(f"run {run.name!r} has a training log of {log['epoch'].numel()} rows; need ≥ 10 epochs")
    train_acc = Series("train_acc", log["epoch"], log["train_acc"])
    test_acc = Series("test_acc", log["epoch"], log["test_acc"])
    memorised = train_acc.first_crossing(0.99)
    generalised = test_acc.first_crossing(0.95)
    final_test = float(test_acc.values[-1])

    assert memorised is not None, (
        f"train accuracy never reached 0.99 (max {float(train_acc.values.max()):.3f} "
        f"at epoch {int(train_acc.epochs[train_acc.values.argmax()])})"
    )
    assert final_test >= 0.99, (
        f"test accuracy at the last epoch {int(test_acc.epochs[-1])} is {final_test:.3f}, "
        f"threshold 0.99 (the run did not generalise)"
    )
    ratio = generalised / max(memorised, 1)
    assert ratio >= 5, (
        f"generalisation is not delayed enough: test acc ≥ 0.95 first at epoch {generalised}, "
        f"train acc ≥ 0.99 first at epoch {memorised}; ratio {ratio:.1f}, threshold ≥ 5"
    )

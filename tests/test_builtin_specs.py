"""The built-in specs do what they promise, trained for real (slow: about 3 minutes, once; then cached)."""

import pytest

from claimlens.builtin import builtin_run
from claimlens.series import grokking_summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def default_run():
    return builtin_run("default", progress=False)


def summary(run):
    log = run.log()
    return grokking_summary(log["epoch"], log["train_acc"], log["test_acc"], threshold=0.99)


def test_default_spec_groks_with_a_clear_gap(default_run):
    s = summary(default_run)
    assert len(default_run.epochs) >= 100
    assert s.memorised_epoch is not None and s.generalised_epoch is not None, s
    assert s.generalised_epoch >= 3 * s.memorised_epoch, (
        f"train acc ≥ 0.99 at epoch {s.memorised_epoch}, test acc ≥ 0.99 at {s.generalised_epoch}: "
        f"ratio {s.delay_ratio:.1f}, need ≥ 3")
    assert float(default_run.log()["test_acc"][-1]) >= 0.99


def test_default_run_is_cached(default_run):
    again = builtin_run("default", progress=False)
    assert again.path == default_run.path and again.content_hash == default_run.content_hash


@pytest.mark.parametrize("name", ["no_weight_decay", "mlp_concat"])
def test_negative_controls_memorise_but_do_not_grok(name):
    run = builtin_run(name, progress=False)
    assert run.spec.expect.get("groks") is False
    s = summary(run)
    assert s.memorised_epoch is not None, f"{name} should still memorise the training set"
    assert s.generalised_epoch is None, f"{name} reached test accuracy ≥ 0.99 at epoch {s.generalised_epoch}"

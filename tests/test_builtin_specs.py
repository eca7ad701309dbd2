"""The built-in specs do what they promise, trained for real (slow: about 3 minutes, once; then cached)."""

import pytest

from claimlens.builtin import builtin_run
from claimlens.core.series import grokking_summary

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


@pytest.mark.parametrize("name, rate", [("pizza", 0.0), ("clock", 1.0)])
def test_pizza_and_clock_models_generalise_and_their_metrics_settle(name, rate):
    """Models A and B (fixtures/pizza.toml, clock.toml): test accuracy ≥ 0.99 well before the end, and gradient
    symmetricity changing by < 0.02 over the last 300 epochs (the 'stable metrics' the short schedule was chosen
    for)."""
    from claimlens.core.checkpoint import checkpoint
    from claimlens.families.pizza.analysis import measure_checkpoint

    run = builtin_run(name, progress=False)
    assert run.spec.model.attn_rate == rate and not run.spec.model.equals_token
    log = run.log()
    assert float(log["test_acc"][-1]) >= 0.99
    s = summary(run)
    assert s.generalised_epoch is not None and s.generalised_epoch <= run.epochs[-1] // 2, s
    gs = [measure_checkpoint(checkpoint(run, e))["gs"] for e in run.epochs[-4:]]
    assert max(gs) - min(gs) < 0.02, gs

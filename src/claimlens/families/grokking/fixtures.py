"""The grokking family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

run_series, phases: the progress measures of Nanda et al. 2023 over a run's checkpoints and the phase
boundaries they locate.
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import clear_errors, needs_transformer

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ()


@pytest.fixture(scope="session")
def run_series(run, final_checkpoints):
    """Every progress measure of ``run`` over its checkpoints (:class:`claimlens.families.grokking.analysis.ProgressMeasures`:
    ``run_series["test_loss"]`` is a :class:`claimlens.core.series.Series`); on a curves-only run, the curves it has
    (a claim reading one it lacks skips with the reason).

    Skips the test, with the reason, for runs that are not 1-layer transformers."""
    if not run.has_weights:
        from claimlens.families.grokking.analysis import CurveMeasures

        return CurveMeasures(run)
    from claimlens.families.grokking.analysis import evaluate

    needs_transformer(run)
    with clear_errors(run):
        return evaluate(run, checkpoints=final_checkpoints)


@pytest.fixture(scope="session")
def progress_version() -> int:
    """The version of what ``run_series`` computes (analyses that reuse its per-example losses key their caches on
    it), known without computing it."""
    from claimlens.families.grokking.analysis import VERSION

    return VERSION


@pytest.fixture(scope="session")
def phases(run_series):
    """Phase boundaries ``t1, t2, t3`` of the run by the catalogue's rules (:func:`claimlens.core.series.detect_phases`);
    on a run with fewer than ``MIN_TRAJECTORY_CHECKPOINTS`` checkpoints, none, with ``unresolved`` saying why."""
    from claimlens.core.series import MIN_TRAJECTORY_CHECKPOINTS, Phases, detect_phases

    s = run_series
    n = len(s.epochs)
    if n < MIN_TRAJECTORY_CHECKPOINTS:
        return Phases(None, None, None, None, unresolved=(
            f"needs ≥ {MIN_TRAJECTORY_CHECKPOINTS} checkpoints to locate phases; the run has {n}"))
    return detect_phases(s["excluded_loss_all_keys"], s["test_loss"], s["test_acc"])

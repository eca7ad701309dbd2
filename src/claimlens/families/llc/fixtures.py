"""The llc family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

llc_series, llc_series_orth: the local learning coefficient at checkpoints spread over the run.
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import fail_about, needs_weights, uncaptured

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ()


def _llc(request: pytest.FixtureRequest, run, *, orth_grad: bool):
    from dataclasses import replace

    from claimlens.errors import ClaimlensError
    from claimlens.families.llc.analysis import default_config, llc_over_run

    needs_weights(run, "the learning coefficient is sampled around the model's weights")
    run.task.require_split("the learning coefficient (sampled on the training set)")  # before any progress bar
    config = replace(default_config(run), orth_grad=orth_grad)
    n = request.config.getoption("claimlens_llc_checkpoints")
    try:
        # The estimate takes minutes on first use: let its progress bar through pytest's capture.
        with uncaptured(request):
            return llc_over_run(run, config, max_checkpoints=n, progress=True)
    except ClaimlensError as exc:
        fail_about(run, exc)


@pytest.fixture(scope="session")
def llc_series(request: pytest.FixtureRequest, run):
    """The local learning coefficient of ``run`` at ``--claims-llc-checkpoints`` checkpoints
    (:class:`claimlens.families.llc.analysis.LLCEstimates`, the run kind's default SGLD configuration, cached on disk)."""
    return _llc(request, run, orth_grad=False)


@pytest.fixture(scope="session")
def llc_series_orth(request: pytest.FixtureRequest, run):
    """As ``llc_series``, with the chains restricted to the hyperplane orthogonal to the gradient at the checkpoint."""
    return _llc(request, run, orth_grad=True)

"""The fixtures claim tests take. Importing this module imports no torch; each fixture imports what it needs.

``run`` (parametrized by the plugin over ``--run``), ``run_series`` (the
progress measures of the run, cached), ``final_checkpoint`` / ``final_activations`` (the final checkpoint and
its forward pass, shared), ``phases``, ``llc_series`` / ``llc_series_orth`` (the learning coefficient),
``thresholds`` and ``evidence``.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.evidence import Evidence
from claimlens.plugin.session import EVIDENCE, THRESHOLDS


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest):
    """The :class:`claimlens.runs.Run` under test (trained and cached first if given as a spec)."""
    return request.param.open(device=request.config.getoption("claimlens_device"))


@pytest.fixture(scope="session")
def run_series(run):
    """Every progress measure of ``run`` over its checkpoints (:class:`claimlens.analysis.ProgressMeasures`:
    ``run_series["test_loss"]`` is a :class:`claimlens.series.Series`).

    Skips the test, with the reason, for runs that are not 1-layer transformers."""
    from claimlens.analysis.progress import evaluate

    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}; this claim needs the transformer's activations")
    return evaluate(run)


@pytest.fixture(scope="session")
def final_checkpoint(run):
    """The final checkpoint of ``run`` (:class:`claimlens.analysis.Checkpoint`), shared with the analyses."""
    from claimlens.analysis.checkpoint import final_checkpoint as final

    return final(run)


@pytest.fixture(scope="session")
def final_activations(final_checkpoint):
    """The forward pass of the final checkpoint over all p² inputs, shared by the claims about the final model
    (:class:`claimlens.models.Activations`: logits, attention pattern, MLP pre/post activations)."""
    return final_checkpoint.activations


@pytest.fixture(scope="session")
def phases(run_series):
    """Phase boundaries ``t1, t2, t3`` of the run by the catalogue's rules (:func:`claimlens.series.detect_phases`)."""
    from claimlens.series import detect_phases

    s = run_series
    return detect_phases(s["excluded_loss_all_keys"], s["test_loss"], s["test_acc"])


def _llc(request: pytest.FixtureRequest, run, *, orth_grad: bool):
    from contextlib import nullcontext
    from dataclasses import replace

    from claimlens.analysis.llc import default_config, llc_over_run
    from claimlens.errors import ClaimlensError

    config = replace(default_config(run), orth_grad=orth_grad)
    n = request.config.getoption("claimlens_llc_checkpoints")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        # The estimate takes minutes on first use: let its progress bar through pytest's capture.
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            return llc_over_run(run, config, max_checkpoints=n, progress=True)
    except ClaimlensError as exc:
        pytest.fail(f"run {run.name!r}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llc_series(request: pytest.FixtureRequest, run):
    """The local learning coefficient of ``run`` at ``--claims-llc-checkpoints`` checkpoints
    (:class:`claimlens.analysis.LLCEstimates`, the run kind's default SGLD configuration, cached on disk)."""
    return _llc(request, run, orth_grad=False)


@pytest.fixture(scope="session")
def llc_series_orth(request: pytest.FixtureRequest, run):
    """As ``llc_series``, with the chains restricted to the hyperplane orthogonal to the gradient at the checkpoint."""
    return _llc(request, run, orth_grad=True)


@pytest.fixture
def thresholds(request: pytest.FixtureRequest):
    """The pass thresholds of this test's claim (``thresholds["delay_ratio"]``): the catalogue's defaults
    (``claimlens.thresholds.DEFAULTS``) with the overrides of pyproject.toml and ``--claims-threshold``."""
    from claimlens.thresholds import Thresholds

    marker = request.node.get_closest_marker("claim")
    claim_id = marker.kwargs.get("id") if marker is not None else None
    if claim_id is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the thresholds fixture needs @pytest.mark.claim(id=...)")
    return Thresholds(claim_id, request.config.stash[THRESHOLDS].get(claim_id))


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Record the series and measurements a claim was judged on (they go into ``claims.json``)."""
    ev = Evidence()
    request.node.stash[EVIDENCE] = ev
    return ev

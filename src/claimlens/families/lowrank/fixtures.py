"""The lowrank family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

lowrank: the gradient and checkpoint matrices' spectra and the per-example-loss PCA trajectory.
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import clear_errors, needs_weights, uncaptured

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ("induction_2l.toml", "induction_1l.toml")


@pytest.fixture(scope="session")
def lowrank(request: pytest.FixtureRequest, run):
    """The gradient and checkpoint matrices' spectra (with their column-permutation nulls) and the PCA trajectory of
    the per-example losses over every checkpoint (:class:`claimlens.families.lowrank.analysis.LowRank`; seconds for the
    built-in runs, cached on disk after the first session)."""
    needs_weights(run, "the gradient and checkpoint matrices are built from the model's weights")
    from claimlens.families.lowrank.analysis import lowrank_over_run

    shared = {}
    if run.spec.model.kind == "transformer":  # its per-example losses are the progress measures' (one forward pass),
        # asked for only when the low-rank measures are not cached
        shared = {"per_example_log_loss": lambda: request.getfixturevalue("run_series").per_example_log_loss,
                  "per_example_version": request.getfixturevalue("progress_version")}
    with uncaptured(request), clear_errors(run):
        return lowrank_over_run(run, progress=True, **shared)

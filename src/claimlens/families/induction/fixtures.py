"""The induction family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

induction, two_layer_partner: the induction toy's scores, and the 2-layer run of a 1-layer control's recipe.
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import clear_errors, needs_sequences, uncaptured

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ("induction_2l.toml", "induction_1l.toml")


@pytest.fixture(scope="session")
def induction(run):
    """Induction and previous-token scores per head, the loss of each repeat and the in-context-learning score at
    every checkpoint of a run of the induction toy (:class:`claimlens.families.induction.analysis.InductionMeasures`)."""
    needs_sequences(run, "the induction scores are measured on the model's attention patterns")
    from claimlens.families.induction.analysis import induction_over_run

    with clear_errors(run):
        return induction_over_run(run)


@pytest.fixture(scope="session")
def two_layer_partner(request: pytest.FixtureRequest, run):
    """The 2-layer run of the same recipe as a 1-layer induction run (``model.n_layers = 2``, all else equal),
    trained on first use and cached — in a plain session, the built-in ``induction_2l``."""
    import dataclasses

    from claimlens.builtin import ensure_run

    needs_sequences(run, "the control is compared with a 2-layer run of the same recipe")
    spec = run.spec
    if spec.task.n_sequences:
        pytest.skip(f"run {run.name!r} trains on a finite set of sequences: the 1-layer control is judged against "
                    f"a fresh-data 2-layer run (not trained here: it would take {spec.train.epochs} steps)")
    partner = dataclasses.replace(spec, name=f"{spec.name}_2layer" if spec.model.n_layers == 1 else spec.name,
                                  model=dataclasses.replace(spec.model, n_layers=2)).validate()
    with uncaptured(request), clear_errors(run):
        return ensure_run(partner, device=request.config.getoption("claimlens_device"))

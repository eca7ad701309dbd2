"""The pizza family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

pizza_clock, pizza_formula_fits: gradient symmetricity, distance irrelevance, the Fourier-mode test and the
logit fits of a generalised model (Zhong et al. 2023).
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import needs_transformer, needs_weights

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ("pizza.toml", "clock.toml", "nv_mlp.toml")


@pytest.fixture(scope="session")
def pizza_clock(run, final_model, final_checkpoints):
    """Gradient symmetricity, distance irrelevance and the Fourier-mode test of a generalised transformer or MLP
    (:class:`claimlens.families.pizza.analysis.PizzaClockMeasures`, at up to 16 checkpoints; the final one's spectra in
    ``.final``)."""
    needs_weights(run)
    if run.spec.model.kind not in ("transformer", "mlp"):
        pytest.skip(f"run {run.name!r} is a {run.spec.model.kind} model: the claim is about modular addition")
    from claimlens.families.pizza.analysis import pizza_clock_over_run

    return pizza_clock_over_run(run, checkpoints=final_checkpoints)


@pytest.fixture(scope="session")
def pizza_formula_fits(run, final_model):
    """The source's Logit FVE of each embedding circle of a generalised transformer's final checkpoint, by the
    pizza and the clock formula (:func:`claimlens.families.pizza.analysis.formula_fits`; a few forward passes)."""
    needs_transformer(run)
    from claimlens.families.pizza.analysis import formula_fits

    return formula_fits(final_model.params, run.spec.model, run.spec.task.p)

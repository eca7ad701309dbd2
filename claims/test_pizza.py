"""Pizza or clock (Zhong et al. 2023; the devinterp hackathon's mode test): which algorithm a transformer learned.

Judged on the final checkpoint of a generalised transformer, on the side its attention rate names (rate 0: pizza,
rate 1: clock), or of the hackathon's MLP on the side its gradient symmetricity names; in a plain session on the
built-in models ``pizza``, ``clock`` and ``nv_mlp`` (and the default run, a rate-1 model). Each rule judged on the other side's model is its negative control (``tests/test_pizza_clock.py``).
The set claim about the attention rate is judged on sweeps, among them the source's own sweep tables
(``--run zhong2023_sweep``, rows of measured values: only this claim reads them).
Rules, statements and thresholds: :mod:`claimlens.families.pizza.rules`.
"""

import math

import pytest

from claimlens.families.pizza import rules as PZ


def _side(run, measures):
    """``(side, basis)``: a transformer's side from its attention rate; an MLP's (the hackathon's, where the
    mode test was first stated) from its final gradient symmetricity."""
    model = run.spec.model
    if model.kind == "transformer":
        rate = float(model.attn_rate)
        return PZ.side_of(rate), rate
    gs = float(measures.gs[-1])
    return PZ.side_of_gs(gs), (f"gradient symmetricity {gs:.3f} (an MLP has no attention rate: its side is read "
                               f"from its gradient symmetricity)")


def _record(claim, m, *names):
    for name in names:
        s = m.series(name)
        claim.chart(name, s.epochs, s.values)
    _circularity(claim, float(m.circularity[-1]), m.epochs[-1])


def _circularity(claim, value: float, epoch: int) -> None:
    """The final embedding's circularity, recorded with every pizza/clock claim (catalogue Revision 3: computed for
    every run, so that the tables' filter, circularity ≥ 0.9, applies to any sweep)."""
    claim.judge(PZ.circularity(None if math.isnan(value) else value, epoch))


@pytest.mark.claim(PZ.GRADIENT_SYMMETRICITY)
def test_gradient_symmetricity(run, pizza_clock, claim):
    if run.spec.model.kind == "mlp":
        pytest.skip(f"run {run.name!r} is an MLP: its side is read from its gradient symmetricity, so judging that "
                    f"by the side would be circular")
    _record(claim, pizza_clock, "gradient symmetricity")
    claim.judge(float(pizza_clock.gs[-1]), *_side(run, pizza_clock), pizza_clock.epochs[-1])


@pytest.mark.claim(PZ.DISTANCE_IRRELEVANCE)
def test_distance_irrelevance(run, pizza_clock, claim):
    _record(claim, pizza_clock, "distance irrelevance", "distance irrelevance of the largest incorrect logit")
    claim.judge(float(pizza_clock.di[-1]), *_side(run, pizza_clock),
                pizza_clock.epochs[-1], di_top_incorrect=float(pizza_clock.di_top_incorrect[-1]))


@pytest.mark.claim(PZ.DOUBLES_FOURIER_MODE)
def test_pizza_doubles_fourier_mode(run, pizza_clock, claim):
    final = pizza_clock.final
    for name, key in (("pre-unembed activations (a = 17, b = 0 … p − 1)", "pre_unembed_modes"),
                      ("embedding", "embedding_modes")):
        spectrum = final[key]
        scaled = (spectrum / spectrum[1:].max()).tolist()  # each over its largest non-constant mode: shapes compare
        claim.chart(f"{name}: Fourier mode magnitude over its largest non-constant mode", list(range(len(scaled))),
                    scaled, x_name="Fourier mode (folded)")
    _record(claim, pizza_clock, "pre-unembed mode ratio m_2k / m_k")
    claim.judge(final, *_side(run, pizza_clock), pizza_clock.epochs[-1])


@pytest.mark.claim(PZ.LOGITS_FIT_PIZZA_FORMULA)
def test_pizza_logits_fit_pizza_formula(run, final_model, pizza_formula_fits, claim):
    from claimlens.families.pizza.analysis import embedding_circularity

    _circularity(claim, embedding_circularity(final_model.params, run.spec.task.p), final_model.epoch)
    claim.judge(pizza_formula_fits, float(run.spec.model.attn_rate), final_model.epoch)

# ---- over a set of runs (the ``run_set`` fixture: a sweep named with --run, the source's own sweep tables with
# --run zhong2023_sweep, or the built-in sweeps with --claims-sweeps; skipped, saying the cost, without one)


@pytest.mark.run_set_axis("model.attn_rate")
@pytest.mark.claim(PZ.ATTENTION_RATE_SELECTS)
def test_attention_rate_selects_algorithm(run_set, final_checkpoints, claim):
    if not run_set.varies("model.attn_rate"):
        pytest.skip(f"run set {run_set.name!r} does not vary model.attn_rate (its axes: {list(run_set.axes)})")
    from claimlens.families.pizza.analysis import sweep_runs

    try:  # trained members measured on the session's final checkpoints (shared with the per-run claims)
        runs = sweep_runs(run_set, checkpoints=final_checkpoints)
    except ValueError as exc:  # a curves-only member: no gradient symmetricity to read
        pytest.skip(str(exc))
    claim.judge(runs)

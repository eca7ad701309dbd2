"""Pizza or clock (Zhong et al. 2023; the devinterp hackathon's mode test): which algorithm a transformer learned.

Judged on the final checkpoint of a generalised transformer, on the side its attention rate names (rate 0: pizza,
rate 1: clock), or of the hackathon's MLP on the side its gradient symmetricity names; in a plain session on the
built-in models ``pizza``, ``clock`` and ``nv_mlp`` (and the default run, a rate-1 model). Each rule judged on the other side's model is its negative control (``tests/test_pizza_clock.py``).
Rules, statements and thresholds: :mod:`claimlens.families.pizza.rules`.
"""

import pytest

from claimlens.config import TransformerConfig
from claimlens.families.pizza import rules as PZ


def _side(run, measures):
    """``(side, basis)``: a transformer's side from its attention rate; an MLP's (the hackathon's, where the
    mode test was first stated) from its final gradient symmetricity."""
    model = run.spec.model
    if isinstance(model, TransformerConfig):
        rate = float(model.attn_rate)
        return PZ.side_of(rate), rate
    gs = float(measures.gs[-1])
    return PZ.side_of_gs(gs), (f"gradient symmetricity {gs:.3f} (an MLP has no attention rate: its side is read "
                               f"from its gradient symmetricity)")


def _record(claim, m, *names):
    for name in names:
        s = m.series(name)
        claim.series(name, s.epochs, s.values)


@pytest.mark.claim(PZ.GRADIENT_SYMMETRICITY)
def test_gradient_symmetricity(run, pizza_clock, claim):
    if run.spec.model.kind == "mlp":
        pytest.skip(f"run {run.name!r} is an MLP: its side is read from its gradient symmetricity, so judging that "
                    f"by the side would be circular")
    _record(claim, pizza_clock, "gradient symmetricity")
    claim.judge(PZ.gradient_symmetricity, float(pizza_clock.gs[-1]), *_side(run, pizza_clock), pizza_clock.epochs[-1])


@pytest.mark.claim(PZ.DISTANCE_IRRELEVANCE)
def test_distance_irrelevance(run, pizza_clock, claim):
    _record(claim, pizza_clock, "distance irrelevance")
    claim.judge(PZ.distance_irrelevance, float(pizza_clock.di[-1]), *_side(run, pizza_clock),
                pizza_clock.epochs[-1])


@pytest.mark.claim(PZ.DOUBLES_FOURIER_MODE)
def test_pizza_doubles_fourier_mode(run, pizza_clock, claim):
    final = pizza_clock.final
    for name, key in (("pre-unembed activations (a = 17, b = 0 … p − 1)", "pre_unembed_modes"),
                      ("embedding", "embedding_modes")):
        spectrum = final[key]
        scaled = (spectrum / spectrum[1:].max()).tolist()  # each over its largest non-constant mode: shapes compare
        claim.verdict.add_points(f"{name}: Fourier mode magnitude over its largest non-constant mode",
                                 "Fourier mode (folded)", list(range(len(scaled))), scaled)
    _record(claim, pizza_clock, "pre-unembed mode ratio m_2k / m_k")
    claim.judge(PZ.doubles_fourier_mode, final, *_side(run, pizza_clock), pizza_clock.epochs[-1])


@pytest.mark.claim(PZ.LOGITS_FIT_PIZZA_FORMULA)
def test_pizza_logits_fit_pizza_formula(run, final_model, pizza_formula_fits, claim):
    claim.judge(PZ.logits_fit_pizza_formula, pizza_formula_fits, float(run.spec.model.attn_rate), final_model.epoch)

# ---- over a set of runs (the ``run_set`` fixture: a sweep named with --run, or the built-in sweeps with
# --claims-sweeps; skipped, saying the cost, without one)


@pytest.mark.run_set_axis("model.attn_rate")
@pytest.mark.claim(PZ.ATTENTION_RATE_SELECTS)
def test_attention_rate_selects_algorithm(run_set, final_checkpoints, claim):
    if not run_set.varies("model.attn_rate"):
        pytest.skip(f"run set {run_set.name!r} does not vary model.attn_rate (its axes: {list(run_set.axes)})")
    from claimlens.core.checkpoint import final_checkpoint
    from claimlens.families.pizza.analysis import measure_checkpoint

    members, deeper = [], []
    for rate, run in run_set.along("model.attn_rate"):
        if not run.has_weights:
            pytest.skip(f"run set {run_set.name!r} has curves only: gradient symmetricity needs the weights")
        if getattr(run.spec.model, "n_layers", 1) != 1:  # the source's statistic is over its 1-layer runs
            deeper.append(run.name)
            continue
        # the session's final checkpoints: a member also judged per run is forwarded once
        members.append((float(rate), measure_checkpoint(final_checkpoint(run, final_checkpoints))["gs"]))
    if deeper:
        claim.note(f"left out {len(deeper)} member(s) of more than one layer (the source's correlation is over its "
                   f"1-layer runs): {', '.join(deeper)}")
    claim.judge(PZ.attention_rate_selects, members)

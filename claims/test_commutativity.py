"""Commutativity emerges at grokking (ARENA 'Development of commutativity'; Nanda et al. 2023 App. A.1).

Rules, statements and thresholds: :mod:`claimlens.rules.grokking` (attention over training) and
:mod:`claimlens.rules.algorithm` (the final model).
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimlens.metrics import algorithm as alg
from claimlens.plugin.fixtures import needs_equals_token
from claimlens.rules import algorithm as A
from claimlens.rules import grokking as G


@pytest.mark.claim(G.COMMUTATIVITY_ATTENTION)
def test_attention_becomes_symmetric(run, run_series, phases, claim):
    needs_equals_token(run, "the claim includes attention from '=' to itself")
    n_heads = 0 if getattr(run, "kind", None) == "curves" else run.spec.model.n_heads  # curves: no attention
    claim.judge(G.commutativity_attention, run_series, phases, n_heads)


@pytest.mark.claim(A.SYMMETRIC_WEIGHTS)
def test_final_model_is_symmetric(run, final_model, claim):
    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}: no attention or position embeddings")
    claim.judge(A.symmetric_weights, alg.position_cosine(final_model.params["pos_embed.W_pos"]),
                alg.neuron_swap_asymmetry(final_model.activations.mlp_post, run.spec.task.p),
                final_model.epoch)


@pytest.mark.claim(A.SWAP_INVARIANT)
def test_output_invariant_under_swapping_inputs(run, final_model, claim):
    """A property of the model, checked on inputs drawn by Hypothesis; the worst pair drawn is recorded."""
    from claimlens.models import forward

    params, p, model = final_model.params, run.spec.task.p, run.spec.model
    worst = {"cmp": 0.0, "pair": None}
    limit = claim.thresholds["max_logit_asymmetry"]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(a=st.integers(0, p - 1), b=st.integers(0, p - 1))
    def swap_invariant(a, b):
        logits = forward(params, torch.tensor([[a, b, p], [b, a, p]]), model).logits
        value = alg.compare(logits[0], logits[1])
        if value > worst["cmp"]:
            worst.update(cmp=value, pair=(a, b))
        assert int(logits[0].argmax()) == int(logits[1].argmax()), (
            f"f({a}, {b}) predicts {int(logits[0].argmax())} but f({b}, {a}) predicts {int(logits[1].argmax())}")
        assert value <= limit, f"G-CMP(logits({a},{b}), logits({b},{a})) = {value:.4g}, threshold ≤ {limit:g}"

    try:
        swap_invariant()
    finally:
        claim.check("worst G-CMP(logits(a,b), logits(b,a)) over drawn pairs", worst["cmp"], "<=", limit,
                    epoch=final_model.epoch, label=f"pair {worst['pair']}")

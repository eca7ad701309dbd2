"""Commutativity emerges at grokking (ARENA 'Development of commutativity'; Nanda et al. 2023 App. A.1).

Pass rules from shared/claims_catalogue.md `commutativity_attention_symmetric_after_grokking`.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimlens.plugin.helpers import require_phases
from claimlens.series import Series, assert_threshold

SOURCE = "ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1"


def attention_gap(rs, n_heads):
    """mean over heads of |A[h,0] − A[h,1]| per checkpoint, and max over heads of A[h,2]."""
    a = rs["attention_to_position"]
    gap = torch.stack([(a.row(f"head={h},pos=0").values - a.row(f"head={h},pos=1").values).abs() for h in range(n_heads)]).mean(0)
    self_attn = torch.stack([a.row(f"head={h},pos=2").values for h in range(n_heads)]).max(0).values
    return Series.of("mean_h |A[h,0] − A[h,1]|", rs.epochs, gap), Series.of("max_h A[h,2]", rs.epochs, self_attn)


@pytest.mark.claim(
    id="commutativity_attention_symmetric_after_grokking",
    statement="Attention from '=' to a and b is unequal during memorisation and equal after cleanup; '=' stops "
              "attending to itself.",
    source=SOURCE,
)
def test_attention_becomes_symmetric(run, run_series, phases, evidence, thresholds):
    require_phases(phases, "t1", "t3")
    gap, self_attn = attention_gap(run_series, run.spec.model.n_heads)
    evidence.series(gap.name, gap.epochs, gap.values)
    evidence.series(self_attn.name, self_attn.epochs, self_attn.values)
    evidence.phase_lines(phases.as_dict())
    after = gap.window(start=phases.t3)
    worst_epoch, worst = after.argmax()
    limit = thresholds["max_gap_after_t3"]
    evidence.measure("max gap after t3", worst, threshold=limit, op="<=", epoch=worst_epoch)
    assert_threshold("mean_h |A[h,0] − A[h,1]| after cleanup (worst checkpoint)", worst, limit, "<=",
                     epoch=worst_epoch)
    at_t1 = gap.at(phases.t1)
    evidence.measure("gap at t1", at_t1, threshold=worst, op=">", epoch=phases.t1)
    assert at_t1 > worst, (f"attention gap at t1 (epoch {phases.t1}) is {at_t1:.4g}, not above its post-cleanup "
                           f"maximum {worst:.4g}: commutativity did not *emerge*")
    final = float(self_attn.values[-1])
    limit = thresholds["max_final_self_attention"]
    evidence.measure("max_h self-attention at the last checkpoint", final, threshold=limit, op="<=",
                     epoch=int(self_attn.epochs[-1]))
    assert_threshold("max_h attention from '=' to itself at the last checkpoint", final, limit, "<=",
                     epoch=int(self_attn.epochs[-1]))


def compare(a: torch.Tensor, b: torch.Tensor) -> float:
    """G-CMP: ‖A − B‖² / (‖A‖·‖B‖)."""
    return float((a - b).pow(2).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


@pytest.mark.claim(
    id="commutativity_symmetric_weights_and_neurons",
    statement="In the final model the position embeddings of a and b are nearly equal and neuron activations "
              "satisfy N(a, b) ≈ N(b, a).",
    source=SOURCE,
)
def test_final_model_is_symmetric(run, evidence, thresholds, request):
    th = thresholds
    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}: no attention or position embeddings")
    params, p = run.final(), run.spec.task.p
    W_pos = params["pos_embed.W_pos"]
    cos = float(torch.nn.functional.cosine_similarity(W_pos[0], W_pos[1], dim=0))
    evidence.measure("cosine(W_pos[0], W_pos[1])", cos, threshold=th["min_position_cosine"], op=">=",
                     epoch=run.epochs[-1])
    acts = request.getfixturevalue("final_activations").mlp_post  # [p², d_mlp]
    grid = acts.reshape(p, p, -1)
    cmp = compare(grid, grid.transpose(0, 1))
    evidence.measure("G-CMP(N, Nᵀ)", cmp, threshold=th["max_neuron_asymmetry"], op="<=", epoch=run.epochs[-1])
    assert_threshold("cosine of the position embeddings of a and b", cos, th["min_position_cosine"], ">=",
                     epoch=run.epochs[-1])
    assert_threshold("G-CMP of neuron activations N(a,b) vs N(b,a)", cmp, th["max_neuron_asymmetry"], "<=",
                     epoch=run.epochs[-1])


@pytest.mark.claim(
    id="commutativity_output_swap_invariant",
    statement="The grokked model's output is invariant under swapping a and b (checked on inputs drawn by "
              "hypothesis).",
    source=SOURCE,
)
def test_output_invariant_under_swapping_inputs(run, evidence, thresholds):
    from claimlens.models import forward

    params, p, model = run.final(), run.spec.task.p, run.spec.model
    worst = {"cmp": 0.0, "pair": None}
    limit = thresholds["max_logit_asymmetry"]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(a=st.integers(0, p - 1), b=st.integers(0, p - 1))
    def swap_invariant(a, b):
        tokens = torch.tensor([[a, b, p], [b, a, p]])
        logits = forward(params, tokens, model).logits
        value = compare(logits[0], logits[1])
        if value > worst["cmp"]:
            worst.update(cmp=value, pair=(a, b))
        assert int(logits[0].argmax()) == int(logits[1].argmax()), (
            f"f({a}, {b}) predicts {int(logits[0].argmax())} but f({b}, {a}) predicts {int(logits[1].argmax())}")
        assert value <= limit, f"G-CMP(logits({a},{b}), logits({b},{a})) = {value:.4g}, threshold ≤ {limit:g}"

    try:
        swap_invariant()
    finally:
        evidence.measure("worst G-CMP(logits(a,b), logits(b,a)) over drawn pairs", worst["cmp"], threshold=limit,
                         op="<=", epoch=run.epochs[-1], label=f"pair {worst['pair']}")

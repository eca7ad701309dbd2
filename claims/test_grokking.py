"""The grokking family's claims (catalogue §3.1): grokking and its phases, the algorithm of the grokked model and the
trajectory of its parts, and commutativity (Nanda, Chan, Lieberum, Smith, Steinhardt 2023 §4–5, App. A, C; ARENA
'Analysis during training', 'Development of commutativity').

Each test fetches what its claim reads from the run and hands it to the claim's rule
(:mod:`claimlens.families.grokking.rules`: the statement, the thresholds with the source's own values, and the pure
rule, which also judges the source's digitised curves: ``pytest claims/ --run nanda2022``). Measurements come from
:mod:`claimlens.families.grokking.metrics` (the final model: its one shared forward pass) and the run's progress
measures (trajectories). Phase boundaries are detected from the run (shape mode): ``t1`` memorisation end, ``t2``
circuit-formation end, ``t3`` cleanup end (:func:`claimlens.core.series.detect_phases`).

A transformer of several layers (the Clock/Pizza release's 2- to 4-layer models) is judged by the claims defined for
any depth (losses, phases, excluded and restricted loss, the embedding, Σθ², the logits, swap invariance); the claims
about the 1-layer circuit (its heads, its MLP's neurons, ``W_L``, the ablations) skip it (``needs_one_layer``).
"""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimlens import Verdict, needs_equals_token, needs_one_layer
from claimlens.families.grokking import analysis as A
from claimlens.families.grokking import metrics as M
from claimlens.families.grokking import rules as G

# ---- grokking and its phases


@pytest.mark.claim(G.DELAYED_GENERALISATION)
def test_grokking_delayed_generalisation(run, training_log, claim, request):
    # The t1 part needs the transformer's excluded loss; on other runs it is recorded as not judged.
    transformer = not run.has_weights or run.spec.model.kind == "transformer"
    phases = request.getfixturevalue("phases") if transformer else None
    claim.judge(training_log["train_acc"], training_log["test_acc"], phases)


@pytest.mark.claim(G.PHASE_BOUNDARIES)
def test_phase_boundaries(run_series, phases, claim):
    claim.judge(run_series, phases)


@pytest.mark.claim(G.EXCLUDED_LOSS_RISES)
def test_excluded_loss_rises(run_series, phases, claim):
    claim.judge(run_series, phases)


@pytest.mark.claim(G.RESTRICTED_LOSS_LEADS)
def test_restricted_loss_falls_before_test_loss(run_series, phases, claim):
    claim.judge(run_series, phases)


@pytest.mark.claim(G.TRIG_LOSS_IDENTITY)
def test_trig_loss_all_equals_train(run, epoch, run_series, claim):
    restricted = run_series["restricted_loss"]
    balanced = restricted.row("train_balanced").at(epoch)
    claim.judge(restricted.row("all").at(epoch), restricted.row("train").at(epoch),
                None if math.isnan(balanced) else balanced, epoch, len(run_series.keys.keys))


@pytest.mark.claim(G.RATIO_PEAKS_AND_RETURNS)
def test_ratio_peaks_then_returns(run_series, phases, claim):
    claim.judge(run_series, phases)


@pytest.mark.claim(G.WEIGHT_NORM_FALLS)
def test_weight_norm_falls_in_phases(run_series, phases, claim):
    claim.judge(run_series, phases)


@pytest.mark.claim(G.GINI_JUMPS)
def test_gini_jumps_in_cleanup(run, run_series, phases, claim):
    needs_one_layer(run, claim)  # W_L
    claim.judge(run_series, phases)


# ---- the algorithm of the grokked model and the trajectory of its parts


def n_heads(run) -> int:
    """Attention heads of a transformer run (0 for a curves-only run or a model of another kind: its rule then
    skips, lacking attention)."""
    model = run.spec.model if run.has_weights else None
    return model.n_heads if model is not None and model.kind == "transformer" else 0


def _W_L(params):
    return M.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])


@pytest.mark.claim(G.EMBEDDING_SPARSE)
def test_embedding_sparse(run_series, phases, claim):
    claim.judge(run_series, phases, run_series.keys.keys)


@pytest.mark.claim(G.KEYS_STABLE)
def test_key_frequencies_stable(run, run_series, phases, claim):
    needs_one_layer(run, claim)  # the MLP neurons' frequencies
    claim.judge(run_series["neuron_key_frequency"], run_series.keys.keys, phases)


@pytest.mark.claim(G.KEY_FREQUENCIES)
def test_key_frequencies(run, run_series, final_model, claim):
    needs_one_layer(run, claim)  # rules 1 and 3 read the MLP neurons and W_L
    rule3 = M.neuron_logit_map_keys(_W_L(final_model.params), run.spec.task.p)
    claim.judge(run_series.keys.keys, rule3)


@pytest.mark.claim(G.NEURONS_CLUSTER)
def test_neurons_cluster(run, run_series, final_model, claim):
    needs_one_layer(run, claim)
    clusters = M.neuron_clusters(final_model.activations.mlp_post, _W_L(final_model.params),
                                   run.spec.task.p, claim.thresholds["neuron_fve"])
    claim.judge(clusters, final_model.epoch)


@pytest.mark.claim(G.NEURON_LOGIT_MAP_RANK)
def test_neuron_logit_map_is_rank_10(run, run_series, final_model, claim):
    needs_one_layer(run, claim)
    keys = run_series.keys.keys
    residual = M.neuron_logit_map_residual(_W_L(final_model.params), keys, run.spec.task.p)
    claim.judge(residual, keys, final_model.epoch)


@pytest.mark.claim(G.LOGITS_COS_SUM)
def test_logits_sum_of_cosines(run, run_series, final_model, claim):
    summary = M.cos_sum_summary(final_model.activations.logits, run.task.labels, run_series.keys.keys,
                                  run.spec.task.p)
    claim.judge(summary, final_model.epoch)


@pytest.mark.claim(G.FOURIER_ABLATIONS)
def test_fourier_ablations(run, run_series, final_model, claim):
    needs_one_layer(run, claim)  # the MLP neurons and W_L
    keys, p, acts = run_series.keys.keys, run.spec.task.p, final_model.activations
    ablations = M.fourier_ablations(acts.logits, run.task.labels, acts.mlp_post, _W_L(final_model.params),
                                      keys, p)
    excluded = run_series["excluded_loss"]
    per_key = M.per_key_excluded_over_train({k: float(excluded.row(f"k={k}").values[-1]) for k in keys},
                                              float(run_series["train_loss"].values[-1]))
    claim.judge(ablations, per_key, p, final_model.epoch)


@pytest.mark.claim(G.SKIP_AND_ATTENTION_ABLATIONS)
def test_skip_and_attention_ablations(run, run_series, final_model, claim):
    needs_one_layer(run, claim)
    needs_equals_token(run, "the attention ablation keeps the '=' token's embedding at the query position")
    loss, mlp_skip, attention = A.skip_and_attention_losses(run, final_model)
    claim.judge(loss, mlp_skip, attention, run.spec.task.p, final_model.epoch)


@pytest.mark.claim(G.ATTENTION_HEADS_FIT)
def test_attention_heads_single_frequency_fit(run, run_series, final_model, claim):
    needs_one_layer(run, claim)
    if float(getattr(run.spec.model, "attn_rate", 1.0)) == 0:
        pytest.skip(f"run {run.name!r} attends with rate 0 (Zhong et al.'s constant attention): its pattern is the "
                    f"all-ones matrix, with no frequency to fit")
    fits = M.attention_head_fits(final_model.activations.pattern, run.spec.task.p)
    claim.judge(fits, final_model.epoch)


@pytest.mark.claim(G.TRIG_FRACTION)
def test_trig_fraction(run, run_series, phases, final_checkpoint, claim):
    needs_one_layer(run, claim)  # the MLP neurons
    assigned = M.neurons_with_a_frequency(final_checkpoint.activations.mlp_post, run.spec.task.p,
                                          claim.thresholds["neuron_fve"])
    claim.judge(run_series, phases, assigned)


@pytest.mark.claim(G.LATE_PHASE_CHANGE)
def test_late_phase_change_after_cleanup(run, run_series, phases, claim):
    needs_one_layer(run, claim)  # attention from '=' in the one block
    needs_equals_token(run, "the claim is about attention from '=' to itself")
    claim.judge(run_series, phases, n_heads(run))


# ---- commutativity


@pytest.mark.claim(G.COMMUTATIVITY_ATTENTION)
def test_attention_becomes_symmetric(run, run_series, phases, claim):
    needs_one_layer(run, claim)  # attention from '=' in the one block
    needs_equals_token(run, "the claim includes attention from '=' to itself")
    claim.judge(run_series, phases, n_heads(run))


@pytest.mark.claim(G.SYMMETRIC_WEIGHTS)
def test_final_model_is_symmetric(run, final_model, claim):
    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}: no attention or position embeddings")
    needs_one_layer(run, claim)  # the one MLP's neurons
    claim.judge(M.position_cosine(final_model.params["pos_embed.W_pos"]),
                M.neuron_swap_asymmetry(final_model.activations.mlp_post, run.spec.task.p),
                final_model.epoch)


@pytest.mark.claim(G.SWAP_INVARIANT)
def test_output_invariant_under_swapping_inputs(run, final_model, claim):
    """A property of the model, checked on inputs drawn by Hypothesis; the worst pair drawn is recorded."""
    p = run.spec.task.p
    worst = {"cmp": 0.0, "pair": None}
    limit = claim.thresholds["max_logit_asymmetry"]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(a=st.integers(0, p - 1), b=st.integers(0, p - 1))
    def swap_invariant(a, b):
        logits = A.swapped_logits(run, final_model, a, b)
        value = M.compare(logits[0], logits[1])
        if value > worst["cmp"]:
            worst.update(cmp=value, pair=(a, b))
        assert int(logits[0].argmax()) == int(logits[1].argmax()), (
            f"f({a}, {b}) predicts {int(logits[0].argmax())} but f({b}, {a}) predicts {int(logits[1].argmax())}")
        assert value <= limit, f"G-CMP(logits({a},{b}), logits({b},{a})) = {value:.4g}, threshold ≤ {limit:g}"

    try:
        swap_invariant()
    finally:
        v = Verdict()
        v.check("worst G-CMP(logits(a,b), logits(b,a)) over drawn pairs", worst["cmp"], "<=", limit,
                epoch=final_model.epoch, label=f"pair {worst['pair']}")
        claim.judge(v)

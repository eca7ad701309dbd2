"""The algorithm of the grokked model and the trajectory of its parts (Nanda et al. 2023 §4–5, App. A, C;
ARENA 'Analysis during training'): catalogue §3.1.

Measurements come from :mod:`claimlens.metrics.algorithm` (final model) and the run's progress measures
(trajectories); rules, statements and thresholds from :mod:`claimlens.rules.algorithm` and
:mod:`claimlens.rules.grokking`. The final-model claims read the final checkpoint's one shared forward pass.
"""

import pytest

from claimlens.metrics import algorithm as alg
from claimlens.metrics import fourier as fo
from claimlens.metrics import progress as pm
from claimlens.metrics.losses import cross_entropy_f64
from claimlens.models import ablated_logits
from claimlens.plugin.fixtures import needs_equals_token
from claimlens.rules import algorithm as A
from claimlens.rules import grokking as G


def n_heads(run) -> int:
    """Attention heads of a transformer run (0 for a curves-only run: its rule then skips, lacking attention)."""
    return 0 if getattr(run, "kind", None) == "curves" else run.spec.model.n_heads


def _W_L(params):
    return pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])


@pytest.mark.claim(A.EMBEDDING_SPARSE)
def test_embedding_sparse(run_series, phases, claim):
    claim.judge(A.embedding_sparse, run_series, phases, run_series.keys.keys)


@pytest.mark.claim(A.KEYS_STABLE)
def test_key_frequencies_stable(run_series, phases, claim):
    claim.judge(A.keys_stable, run_series["neuron_key_frequency"], run_series.keys.keys, phases)


@pytest.mark.claim(A.KEY_FREQUENCIES)
def test_key_frequencies(run, run_series, final_model, claim):
    p = run.spec.task.p
    rule3 = fo.key_frequencies_by_norm(fo.fft_tokens(_W_L(final_model.params), fo.fourier_basis(p)), p,
                                       "neuron_logit_map").keys
    claim.judge(A.key_frequencies, run_series.keys.keys, rule3)


@pytest.mark.claim(A.NEURONS_CLUSTER)
def test_neurons_cluster(run, run_series, final_model, claim):
    clusters = alg.neuron_clusters(final_model.activations.mlp_post, _W_L(final_model.params),
                                   run.spec.task.p, claim.thresholds["neuron_fve"])
    claim.judge(A.neurons_cluster, clusters, final_model.epoch)


@pytest.mark.claim(A.NEURON_LOGIT_MAP_RANK)
def test_neuron_logit_map_is_rank_10(run, run_series, final_model, claim):
    keys = run_series.keys.keys
    residual = alg.neuron_logit_map_residual(_W_L(final_model.params), keys, run.spec.task.p)
    claim.judge(A.neuron_logit_map_rank, residual, keys, final_model.epoch)


@pytest.mark.claim(A.LOGITS_COS_SUM)
def test_logits_sum_of_cosines(run, run_series, final_model, claim):
    summary = alg.cos_sum_summary(final_model.activations.logits, run.task.labels, run_series.keys.keys,
                                  run.spec.task.p)
    claim.judge(A.logits_cos_sum, summary, final_model.epoch)


@pytest.mark.claim(A.FOURIER_ABLATIONS)
def test_fourier_ablations(run, run_series, final_model, claim):
    keys, p, acts = run_series.keys.keys, run.spec.task.p, final_model.activations
    ablations = alg.fourier_ablations(acts.logits, run.task.labels, acts.mlp_post, _W_L(final_model.params),
                                      keys, p)
    excluded = run_series["excluded_loss"]
    per_key = alg.per_key_excluded_over_train({k: float(excluded.row(f"k={k}").values[-1]) for k in keys},
                                              float(run_series["train_loss"].values[-1]))
    claim.judge(A.fourier_ablations, ablations, per_key, p, final_model.epoch)


@pytest.mark.claim(A.SKIP_AND_ATTENTION_ABLATIONS)
def test_skip_and_attention_ablations(run, run_series, final_model, claim):
    needs_equals_token(run, "the attention ablation keeps the '=' token's embedding at the query position")
    params, acts, labels, model = final_model.params, final_model.activations, run.task.labels, run.spec.model
    loss = cross_entropy_f64(acts.logits, labels).item()
    mlp_skip = cross_entropy_f64(ablated_logits(params, acts, model, "mlp_skip"), labels).item()
    attention = cross_entropy_f64(ablated_logits(params, acts, model, "attention"), labels).item()
    claim.judge(A.skip_and_attention_ablations, loss, mlp_skip, attention, run.spec.task.p, final_model.epoch)


@pytest.mark.claim(A.ATTENTION_HEADS_FIT)
def test_attention_heads_single_frequency_fit(run, run_series, final_model, claim):
    fits = alg.attention_head_fits(final_model.activations.pattern, run.spec.task.p)
    claim.judge(A.attention_heads_fit, fits, final_model.epoch)


@pytest.mark.claim(A.TRIG_FRACTION)
def test_trig_fraction(run, run_series, phases, final_checkpoint, claim):
    p = run.spec.task.p
    kf = fo.key_frequencies_from_neurons(final_checkpoint.activations.mlp_post, p, fo.frequencies(p))
    assigned = pm.neuron_clusters(kf.details["neuron_freq"], kf.details["neuron_frac"],
                                  claim.thresholds["neuron_fve"]) >= 1
    claim.judge(A.trig_fraction, run_series, phases, assigned)


@pytest.mark.claim(G.LATE_PHASE_CHANGE)
def test_late_phase_change_after_cleanup(run, run_series, phases, claim):
    needs_equals_token(run, "the claim is about attention from '=' to itself")
    claim.judge(G.late_phase_change, run_series, phases, n_heads(run))

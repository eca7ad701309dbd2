"""Progress measures and the Fourier algorithm (Nanda et al. 2023 §4–5; ARENA 'Analysis during training').

Pass rules are the catalogue's shape-mode rules (shared/claims_catalogue.md §3.1); thresholds marked
"proposed" there are used as written, not tuned to any run.
"""

import math

import pytest
import torch

from claimlens.metrics import fourier as fo
from claimlens.metrics import progress as pm
from claimlens.metrics.losses import cross_entropy_f64
from claimlens.models import forward
from claimlens.plugin.helpers import require_phases as need
from claimlens.plugin.helpers import series_of as s
from claimlens.series import Series, assert_threshold

NCLSS = "Nanda et al. 2023, 'Progress measures for grokking via mechanistic interpretability'"
ARENA = "ARENA 'Grokking and modular arithmetic: analysis during training'"


@pytest.mark.claim(
    id="excluded_loss_rises_during_circuit_formation",
    statement="Excluded loss (key frequencies removed) rises by orders of magnitude during circuit formation "
              "while train loss stays flat; removing random directions instead does almost nothing.",
    source=f"{NCLSS}, §5.1–5.2, Fig. 7 and 15; ARENA 'Excluded loss'",
)
def test_excluded_loss_rises(run, run_series, phases, evidence):
    need(phases, "t1", "t2")
    excl, train = s(run_series, "excluded_loss_all_keys"), s(run_series, "train_loss")
    evidence.series(excl.name, excl.epochs, excl.values, log=True)
    evidence.series(train.name, train.epochs, train.values, log=True)
    evidence.phase_lines(phases.as_dict())
    t1, t2 = phases.t1, phases.t2
    rise = math.log10(excl.at(t2) / excl.at(t1))
    drift = abs(math.log10(train.at(t2) / train.at(t1)))
    start = excl.at(t1) / train.at(t1)
    evidence.measure("log10 excluded(t2)/excluded(t1)", rise, threshold=2, op=">=")
    evidence.measure("|log10 train(t2)/train(t1)|", drift, threshold=1, op="<=")
    evidence.measure("excluded(t1) / train(t1)", start, threshold=10, op="<=", epoch=t1)
    # control: remove two random orthonormal directions of the grid instead (seeded)
    p, task = run.spec.task.p, run.task
    L = forward(run.checkpoint(t2), task.tokens, run.spec.model).logits.double()
    q, _ = torch.linalg.qr(torch.randn(p * p, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    ctrl = cross_entropy_f64((L - fo.project(L, q.T))[task.train_idx], task.labels[task.train_idx]).item()
    base = cross_entropy_f64(L[task.train_idx], task.labels[task.train_idx]).item()
    evidence.measure("random-direction control: loss ratio at t2", ctrl / base, threshold=2, op="<", epoch=t2)
    assert_threshold("excluded loss rise t1→t2 (log10)", rise, 2, ">=", epoch=t2)
    assert_threshold("train loss change t1→t2 (|log10|)", drift, 1, "<=", epoch=t2)
    assert_threshold("excluded loss at t1 over train loss at t1", start, 10, "<=", epoch=t1)
    assert ctrl / base < 2, f"removing two random directions multiplies the train loss by {ctrl / base:.3g} at t2"


@pytest.mark.claim(
    id="test_over_restricted_ratio_peaks_then_returns",
    statement="Test loss / restricted loss grows during circuit formation (10^4–10^5 in the paper), peaks "
              "between t1 and t3, and returns to a low ratio after cleanup.",
    source=f"{NCLSS}, Fig. 7; ARENA text",
)
def test_ratio_peaks_then_returns(run_series, phases, evidence):
    need(phases, "t1", "t3")
    ratio = Series.of("test_loss / restricted_loss", run_series.epochs,
                      run_series["test_loss"].row() / run_series["trig_loss_all"].row())
    evidence.series(ratio.name, ratio.epochs, ratio.values, log=True)
    evidence.phase_lines(phases.as_dict())
    epoch, peak = ratio.argmax()
    final = float(ratio.values[-1])
    evidence.measure("max ratio", peak, threshold=1e3, op=">=", epoch=epoch)
    evidence.measure("ratio at the last checkpoint", final, threshold=10, op="<=", epoch=int(ratio.epochs[-1]))
    assert_threshold("max test/restricted ratio", peak, 1e3, ">=", epoch=epoch)
    assert phases.t1 <= epoch <= phases.t3, f"the ratio peaks at epoch {epoch}, outside [t1, t3] = [{phases.t1}, {phases.t3}]"
    assert_threshold("test/restricted ratio at the last checkpoint", final, 10, "<=", epoch=int(ratio.epochs[-1]))


@pytest.mark.claim(
    id="gini_fourier_sparsity_jumps_in_cleanup",
    statement="The Gini coefficients of the Fourier norms of W_E and W_L stay flat in memorisation and rise "
              "sharply during cleanup.",
    source=f"{NCLSS}, §5.1, Fig. 7 (bottom left)",
)
def test_gini_jumps_in_cleanup(run_series, phases, evidence):
    need(phases, "t1", "t2", "t3")
    evidence.phase_lines(phases.as_dict())
    failures = []
    for name in ("gini_W_E", "gini_W_L"):
        g = s(run_series, name)
        evidence.series(name, g.epochs, g.values)
        formation = g.at(phases.t2) - g.at(phases.t1)
        cleanup = g.at(phases.t3) - g.at(phases.t2)
        evidence.measure(f"{name}: ΔG cleanup / ΔG formation", cleanup / formation if formation else math.inf,
                         threshold=2, op=">=")
        evidence.measure(f"{name}: ΔG cleanup", cleanup, threshold=0.1, op=">=")
        if cleanup < 2 * formation or cleanup < 0.1:
            failures.append(f"{name}: ΔG(t2→t3) {cleanup:.3g} vs ΔG(t1→t2) {formation:.3g} (need ≥ 2× and ≥ 0.1)")
    final = float(run_series["gini_W_E"].row()[-1])
    evidence.measure("final G(W_E)", final, threshold=0.6, op=">=", epoch=int(run_series.epochs[-1]))
    if final < 0.6:
        failures.append(f"final G(W_E) {final:.3g} < 0.6")
    assert not failures, "; ".join(failures)


@pytest.mark.claim(
    id="weight_norm_falls_in_phases",
    statement="The total sum of squared weights falls smoothly in circuit formation, sharply in cleanup, "
              "then plateaus.",
    source=f"{NCLSS}, Fig. 7 (bottom right); ARENA 'sum of squared weights'",
)
def test_weight_norm_falls_in_phases(run_series, phases, evidence):
    need(phases, "t1", "t2", "t3")
    ssw = s(run_series, "sum_sq_weights")
    evidence.series(ssw.name, ssw.epochs, ssw.values)
    evidence.phase_lines(phases.as_dict())
    t1, t2, t3 = phases.t1, phases.t2, phases.t3
    formation = (ssw.at(t2) - ssw.at(t1)) / (t2 - t1) * 1000
    cleanup = (ssw.at(t3) - ssw.at(t2)) / (t3 - t2) * 1000
    after = abs(float(ssw.values[-1]) - ssw.at(t3)) / ssw.at(t3)
    evidence.measure("slope in circuit formation (per 1k epochs)", formation, threshold=0, op="<")
    evidence.measure("slope in cleanup (per 1k epochs)", cleanup, threshold=2 * formation, op="<=")
    evidence.measure("relative change after t3", after, threshold=0.05, op="<=")
    assert formation < 0 and cleanup < 0, f"slopes {formation:.4g} and {cleanup:.4g} per 1k epochs must both be < 0"
    assert_threshold("cleanup slope (must be ≤ 2× the formation slope)", cleanup, 2 * formation, "<=")
    assert_threshold("relative change of Σθ² after t3", after, 0.05, "<=")


@pytest.mark.claim(
    id="embedding_sparse_in_fourier_basis",
    statement="The final embedding is sparse in the Fourier basis: six frequencies hold ≥ 90% of its norm, the "
              "key frequencies among them; the other frequencies fade between t1 and t3.",
    source=f"{NCLSS}, §4.1, Fig. 3a; ARENA 'Development of the embedding'",
)
def test_embedding_sparse(run_series, phases, evidence):
    need(phases, "t1", "t3")
    e = run_series["embed_fourier_norms"].values  # [p, n_ckpt], squared norms per basis row
    per_freq = e[1::2] + e[2::2]  # [(p-1)/2, n_ckpt]
    final = per_freq[:, -1]
    top6 = torch.topk(final, 6).indices + 1
    share = float(final[top6 - 1].sum() / final.sum())
    keys = run_series.keys.keys
    evidence.measure("share of the top-6 frequencies at the end", share, threshold=0.9, op=">=")
    evidence.measure("top-6 frequencies", sorted(top6.tolist()))
    evidence.measure("key frequencies", keys)
    epochs = run_series.epochs.tolist()
    key_rows = torch.tensor([k - 1 for k in keys])
    nonkey = 1 - per_freq[key_rows].sum(0) / per_freq.sum(0)
    evidence.series("non-key share of the embedding norm", run_series.epochs, nonkey)
    evidence.phase_lines(phases.as_dict())
    fall = float(nonkey[epochs.index(phases.t1)] / nonkey[epochs.index(phases.t3)])
    evidence.measure("non-key share fall t1→t3", fall, threshold=5, op=">=")
    assert_threshold("share of the embedding's non-constant norm in its top 6 frequencies", share, 0.9, ">=")
    missing = sorted(set(keys) - set(top6.tolist()))
    assert not missing, f"key frequencies {missing} are not among the embedding's top 6 {sorted(top6.tolist())}"
    assert_threshold("fall of the non-key share between t1 and t3", fall, 5, ">=")


@pytest.mark.claim(
    id="key_frequencies_mainline",
    statement="A handful of key frequencies (3–6) carry the algorithm, and the neuron rule and the "
              "neuron-logit-map rule agree on them.",
    source=f"{NCLSS}, §4.1, App. C.2.1; ARENA key frequencies",
)
def test_key_frequencies(run, run_series, evidence):
    p = run.spec.task.p
    params = run.final()
    rule1 = run_series.keys.keys
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    rule3 = fo.key_frequencies_by_norm(fo.fft_tokens(W_L, fo.fourier_basis(p)), p, "neuron_logit_map").keys
    agree = len(set(rule1) & set(rule3)) / max(len(set(rule1) | set(rule3)), 1)
    evidence.measure("keys (rule 1, neuron clusters)", rule1)
    evidence.measure("keys (rule 3, W_L norms > max/4)", rule3)
    evidence.measure("number of keys", len(rule1), threshold=6, op="<=")
    evidence.measure("agreement of rules 1 and 3 (Jaccard)", agree, threshold=0.8, op=">=")
    assert 3 <= len(rule1) <= 6, f"{len(rule1)} key frequencies {rule1}; expected 3 to 6"
    assert_threshold(f"agreement of rule 1 {rule1} and rule 3 {rule3}", agree, 0.8, ">=")


@pytest.mark.claim(
    id="neurons_cluster_by_single_frequency",
    statement="Most neurons (≥ 75%) are explained (≥ 85%) by one frequency, and each cluster's W_L columns carry "
              "only its own frequency (≥ 90%).",
    source=f"{NCLSS}, §4.3, Fig. 5",
)
def test_neurons_cluster(run, run_series, final_activations, evidence):
    p = run.spec.task.p
    params = run.final()
    acts = final_activations.mlp_post
    kf = fo.key_frequencies_from_neurons(acts, p, fo.frequencies(p))
    clusters = pm.neuron_clusters(kf.details["neuron_freq"], kf.details["neuron_frac"], 0.85)
    assigned = float((clusters >= 1).double().mean())
    evidence.measure("share of neurons assigned to one frequency", assigned, threshold=0.75, op=">=")
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    coef = fo.fft_tokens(W_L, fo.fourier_basis(p)).pow(2)  # [p, d_mlp]
    worst = 1.0
    for k in sorted(set(clusters.tolist()) - {-1}):
        cols = clusters == k
        own = float(coef[2 * k - 1:2 * k + 1][:, cols].sum() / coef[:, cols].sum())
        evidence.measure("W_L norm in the cluster's own frequency", own, threshold=0.9, op=">=", label=f"k={k}")
        worst = min(worst, own)
    assert_threshold("share of neurons explained ≥ 85% by one frequency", assigned, 0.75, ">=")
    assert_threshold("worst cluster's W_L norm in its own frequency", worst, 0.9, ">=")


@pytest.mark.claim(
    id="logits_are_sum_of_cosines",
    statement="The final logits are ≈ Σ_k α_k cos(w_k(a+b−c)) over the key frequencies (FVE ≥ 0.9), the "
              "approximation loses no accuracy in loss, and ≥ 90% of the logits' 2D Fourier norm is in key blocks.",
    source=f"{NCLSS}, §4.1–4.2; TransformerLens grokking demo",
)
def test_logits_sum_of_cosines(run, run_series, final_activations, evidence):
    p, task = run.spec.task.p, run.task
    L = final_activations.logits.double()
    keys = run_series.keys.keys
    fit = pm.cos_sum_fit(L, keys, p)
    ce_fit = cross_entropy_f64(fit.fitted_logits, task.labels).item()
    ce = cross_entropy_f64(L, task.labels).item()
    centred = L - L.mean(0)
    kept = fo.project(centred, fo.key_directions(p, keys)).pow(2).sum().item()
    share = kept / centred.pow(2).sum().item()
    evidence.measure("FVE of the cos-sum fit", fit.fve, threshold=0.9, op=">=")
    evidence.measure("loss of the fit / loss of the logits", ce_fit / ce, threshold=1, op="<=")
    evidence.measure("share of the logit norm in the key cos/sin(w(a+b)) directions", share, threshold=0.9, op=">=")
    assert_threshold("FVE of Σ_k α_k cos(w_k(a+b−c))", fit.fve, 0.9, ">=")
    assert_threshold(f"loss of the fit ({ce_fit:.3g}) over the loss of the logits ({ce:.3g})", ce_fit / ce, 1, "<=")
    assert_threshold("share of the centred logits in the key directions", share, 0.9, ">=")


@pytest.mark.claim(
    id="trig_fraction_rises_logits_before_neurons",
    statement="The share of variance in the key trig directions rises for logits, pre- and post-activations; "
              "logits rise early and reach ≥ 0.9, ahead of the neurons by ≥ 10 checkpoints.",
    source=f"{ARENA} 'Development of computing trig components'",
)
def test_trig_fraction(run, run_series, phases, evidence):
    need(phases, "t1")
    evidence.phase_lines(phases.as_dict())
    reached = {}
    for label in ("logits", "mlp_pre", "mlp_post"):
        t = s(run_series, "trig_fraction", label)
        evidence.series("trig_fraction", t.epochs, t.values, label=label)
        rise = float(t.values[-1]) / max(t.at(phases.t1), 1e-12)
        evidence.measure("final / value at t1", rise, threshold=3, op=">=", label=label)
        assert_threshold(f"trig fraction of {label}: final over its value at t1", rise, 3, ">=")
        reached[label] = t.first_crossing(0.5 * float(t.values[-1]))
    final = float(run_series["trig_fraction"].row("logits")[-1])
    evidence.measure("final logit trig fraction", final, threshold=0.9, op=">=")
    assert_threshold("final trig fraction of the logits", final, 0.9, ">=")
    lead = reached["mlp_post"] - reached["logits"]
    margin = 10 * run.spec.train.checkpoint_every
    evidence.measure("lead of logits over neurons (epochs, at half their final value)", lead, threshold=margin, op=">=")
    assert_threshold("lead of the logits over the neurons (epochs)", lead, margin, ">=")

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
from claimlens.plugin.helpers import require_phases as need
from claimlens.plugin.helpers import series_of as s
from claimlens.series import ClaimFailure, Series, assert_threshold, lead_margin

NCLSS = "Nanda et al. 2023, 'Progress measures for grokking via mechanistic interpretability'"
ARENA = "ARENA 'Grokking and modular arithmetic: analysis during training'"


@pytest.mark.claim(
    id="excluded_loss_rises_during_circuit_formation",
    statement="Excluded loss (key frequencies removed) rises by orders of magnitude during circuit formation "
              "while train loss stays flat; removing random directions instead does almost nothing.",
    source=f"{NCLSS}, §5.1–5.2, Fig. 7 and 15; ARENA 'Excluded loss'",
)
def test_excluded_loss_rises(run, run_series, phases, evidence, thresholds):
    th = thresholds
    need(phases, "t1", "t2")
    excl, train = s(run_series, "excluded_loss_all_keys"), s(run_series, "train_loss")
    evidence.series(excl.name, excl.epochs, excl.values, log=True)
    evidence.series(train.name, train.epochs, train.values, log=True)
    evidence.phase_lines(phases.as_dict())
    t1, t2 = phases.t1, phases.t2
    rise = math.log10(excl.at(t2) / excl.at(t1))
    drift = abs(math.log10(train.at(t2) / train.at(t1)))
    start = excl.at(t1) / train.at(t1)
    evidence.measure("log10 excluded(t2)/excluded(t1)", rise, threshold=th["min_log10_rise"], op=">=")
    evidence.measure("|log10 train(t2)/train(t1)|", drift, threshold=th["max_abs_log10_train_change"], op="<=")
    evidence.measure("excluded(t1) / train(t1)", start, threshold=th["max_excluded_over_train_at_t1"], op="<=",
                     epoch=t1)
    # control: remove two random orthonormal directions of the grid instead (seeded)
    control = run_series["random_direction_control"].at(t2)
    evidence.measure("random-direction control: loss ratio at t2", control,
                     threshold=th["max_random_control_ratio"], op="<", epoch=t2)
    assert_threshold("excluded loss rise t1→t2 (log10)", rise, th["min_log10_rise"], ">=", epoch=t2)
    assert_threshold("train loss change t1→t2 (|log10|)", drift, th["max_abs_log10_train_change"], "<=", epoch=t2)
    assert_threshold("excluded loss at t1 over train loss at t1", start, th["max_excluded_over_train_at_t1"], "<=",
                     epoch=t1)
    assert control < th["max_random_control_ratio"], (
        f"removing two random directions multiplies the train loss by {control:.3g} at t2")


@pytest.mark.claim(
    id="test_over_restricted_ratio_peaks_then_returns",
    statement="Test loss / restricted loss grows during circuit formation (10^4–10^5 in the paper), peaks "
              "between t1 and t3, and returns to a low ratio after cleanup.",
    source=f"{NCLSS}, Fig. 7; ARENA text",
)
def test_ratio_peaks_then_returns(run_series, phases, evidence, thresholds):
    th = thresholds
    need(phases, "t1", "t3")
    ratio = Series.of("test_loss / restricted_loss", run_series.epochs,
                      run_series["test_loss"].values / run_series["trig_loss_all"].values)
    evidence.series(ratio.name, ratio.epochs, ratio.values, log=True)
    evidence.phase_lines(phases.as_dict())
    epoch, peak = ratio.argmax()
    final = float(ratio.values[-1])
    evidence.measure("max ratio", peak, threshold=th["min_peak_ratio"], op=">=", epoch=epoch)
    evidence.measure("ratio at the last checkpoint", final, threshold=th["max_final_ratio"], op="<=",
                     epoch=int(ratio.epochs[-1]))
    assert_threshold("max test/restricted ratio", peak, th["min_peak_ratio"], ">=", epoch=epoch)
    assert phases.t1 <= epoch <= phases.t3, (
        f"the ratio peaks at epoch {epoch}, outside [t1, t3] = [{phases.t1}, {phases.t3}]")
    assert_threshold("test/restricted ratio at the last checkpoint", final, th["max_final_ratio"], "<=",
                     epoch=int(ratio.epochs[-1]))


@pytest.mark.claim(
    id="gini_fourier_sparsity_jumps_in_cleanup",
    statement="The Gini coefficients of the Fourier norms of W_E and W_L stay flat in memorisation and rise "
              "sharply during cleanup.",
    source=f"{NCLSS}, §5.1, Fig. 7 (bottom left)",
)
def test_gini_jumps_in_cleanup(run_series, phases, evidence, thresholds):
    th = thresholds
    dominance, least = th["min_cleanup_over_formation"], th["min_cleanup_rise"]
    need(phases, "t1", "t2", "t3")
    evidence.phase_lines(phases.as_dict())
    failures = []
    for name in ("gini_W_E", "gini_W_L"):
        g = s(run_series, name)
        evidence.series(name, g.epochs, g.values)
        formation = g.at(phases.t2) - g.at(phases.t1)
        cleanup = g.at(phases.t3) - g.at(phases.t2)
        evidence.measure(f"{name}: ΔG cleanup / ΔG formation", cleanup / formation if formation else math.inf,
                         threshold=dominance, op=">=")
        evidence.measure(f"{name}: ΔG cleanup", cleanup, threshold=least, op=">=")
        if cleanup < dominance * formation or cleanup < least:
            failures.append(f"{name}: ΔG(t2→t3) {cleanup:.3g} vs ΔG(t1→t2) {formation:.3g} "
                            f"(need ≥ {dominance:g}× and ≥ {least:g})")
    final = float(run_series["gini_W_E"].values[-1])
    evidence.measure("final G(W_E)", final, threshold=th["min_final_gini_W_E"], op=">=",
                     epoch=int(run_series.epochs[-1]))
    if final < th["min_final_gini_W_E"]:
        failures.append(f"final G(W_E) {final:.3g} < {th['min_final_gini_W_E']:g}")
    if failures:
        raise ClaimFailure("; ".join(failures))


@pytest.mark.claim(
    id="weight_norm_falls_in_phases",
    statement="The total sum of squared weights falls smoothly in circuit formation, sharply in cleanup, "
              "then plateaus.",
    source=f"{NCLSS}, Fig. 7 (bottom right); ARENA 'sum of squared weights'",
)
def test_weight_norm_falls_in_phases(run_series, phases, evidence, thresholds):
    factor, flat = thresholds["min_cleanup_over_formation_slope"], thresholds["max_relative_change_after_t3"]
    need(phases, "t1", "t2", "t3")
    ssw = s(run_series, "sum_sq_weights")
    evidence.series(ssw.name, ssw.epochs, ssw.values)
    evidence.phase_lines(phases.as_dict())
    t1, t2, t3 = phases.t1, phases.t2, phases.t3
    formation = (ssw.at(t2) - ssw.at(t1)) / (t2 - t1) * 1000
    cleanup = (ssw.at(t3) - ssw.at(t2)) / (t3 - t2) * 1000
    after = abs(float(ssw.values[-1]) - ssw.at(t3)) / ssw.at(t3)
    evidence.measure("slope in circuit formation (per 1k epochs)", formation, threshold=0, op="<")
    evidence.measure("slope in cleanup (per 1k epochs)", cleanup, threshold=factor * formation, op="<=")
    evidence.measure("relative change after t3", after, threshold=flat, op="<=")
    assert formation < 0 and cleanup < 0, f"slopes {formation:.4g} and {cleanup:.4g} per 1k epochs must both be < 0"
    assert_threshold(f"cleanup slope (must be ≤ {factor:g}× the formation slope)", cleanup, factor * formation, "<=")
    assert_threshold("relative change of Σθ² after t3", after, flat, "<=")


@pytest.mark.claim(
    id="embedding_sparse_in_fourier_basis",
    statement="The final embedding is sparse in the Fourier basis: six frequencies hold ≥ 90% of its norm, the "
              "key frequencies among them; the other frequencies fade between t1 and t3; and its singular values "
              "collapse onto the keys (a cos/sin pair per frequency holds 90% of its norm, fewer than at t1).",
    source=f"{NCLSS}, §4.1, Fig. 3a; ARENA 'Development of the embedding' (singular values)",
)
def test_embedding_sparse(run_series, phases, evidence, thresholds):
    th = thresholds
    need(phases, "t1", "t3")
    e = run_series["embed_fourier_norms"].data  # [p, n_ckpt], squared norms per basis row
    per_freq = e[1::2] + e[2::2]  # [(p-1)/2, n_ckpt]
    final = per_freq[:, -1]
    n_top = int(th["top_frequencies"])
    top = torch.topk(final, n_top).indices + 1
    share = float(final[top - 1].sum() / final.sum())
    keys = run_series.keys.keys
    evidence.measure(f"share of the top-{n_top} frequencies at the end", share, threshold=th["min_top_share"], op=">=")
    evidence.measure(f"top-{n_top} frequencies", sorted(top.tolist()))
    evidence.measure("key frequencies", keys)
    epochs = run_series.epochs.tolist()
    key_rows = torch.tensor([k - 1 for k in keys])
    nonkey = 1 - per_freq[key_rows].sum(0) / per_freq.sum(0)
    evidence.series("non-key share of the embedding norm", run_series.epochs, nonkey)
    evidence.phase_lines(phases.as_dict())
    fall = float(nonkey[epochs.index(phases.t1)] / nonkey[epochs.index(phases.t3)])
    evidence.measure("non-key share fall t1→t3", fall, threshold=th["min_nonkey_fall"], op=">=")
    # Singular values: the embedding of the algorithm spans a cos/sin plane per frequency it uses.
    share_sv = th["svd_norm_share"]
    n90 = pm.singular_values_for(share_sv, run_series["embed_singular_values"].data)
    evidence.series(f"singular values holding {share_sv:.0%} of the embedding's norm", run_series.epochs, n90)
    allowed = 2 * (len(keys) + int(th["max_extra_singular_pairs"]))
    at_t1, at_end = int(n90[epochs.index(phases.t1)]), int(n90[-1])
    evidence.measure(f"singular values for {share_sv:.0%} of the norm, last checkpoint", at_end, threshold=allowed,
                     op="<=", epoch=epochs[-1])
    evidence.measure(f"singular values for {share_sv:.0%} of the norm, t1", at_t1, threshold=at_end, op=">",
                     epoch=phases.t1)
    assert_threshold(f"share of the embedding's non-constant norm in its top {n_top} frequencies", share,
                     th["min_top_share"], ">=")
    missing = sorted(set(keys) - set(top.tolist()))
    assert not missing, f"key frequencies {missing} are not among the embedding's top {n_top} {sorted(top.tolist())}"
    assert_threshold("fall of the non-key share between t1 and t3", fall, th["min_nonkey_fall"], ">=")
    assert_threshold(f"singular values holding {share_sv:.0%} of the final embedding's norm ({len(keys)} keys)", at_end,
                     allowed, "<=", epoch=epochs[-1])
    assert at_t1 > at_end, (f"the embedding's singular values did not collapse: {at_t1} hold {share_sv:.0%} of its "
                            f"norm at t1 (epoch {phases.t1}), {at_end} at the end")


@pytest.mark.claim(
    id="key_frequencies_stable_after_cleanup",
    statement="Once cleanup ends (t3) the key frequencies no longer change: at every checkpoint from t3 on, the "
              "neurons' frequencies (G-KEY rule 1) are the final key frequencies.",
    source=f"{NCLSS}, §5.2 (a stable phase follows cleanup), App. C.2.1",
)
def test_key_frequencies_stable(run, run_series, phases, evidence, thresholds):
    need(phases, "t3")
    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}: no transformer neurons")
    final = set(run_series.keys.keys)
    own = run_series["neuron_key_frequency"]  # 1 where k is a key of that checkpoint's own neurons (rule 1)
    epochs = [e for e in run.epochs if e >= phases.t3]
    keysets, agreement = {}, []
    for e in epochs:
        keys = {int(label[2:]) for label in own.labels if own.row(label).at(e) == 1.0}
        keysets[e] = sorted(keys)
        agreement.append(len(keys & final) / max(len(keys | final), 1))
    after = Series.of("agreement with the final key set (Jaccard)", epochs, agreement)
    evidence.series(after.name, after.epochs, after.values)
    evidence.phase_lines(phases.as_dict())
    evidence.measure("final key frequencies (rule 1)", sorted(final))
    worst_epoch, worst = after.argmin()
    limit = thresholds["min_agreement"]
    evidence.measure("worst agreement from t3 on", worst, threshold=limit, op=">=", epoch=worst_epoch)
    evidence.measure("checkpoints from t3 on", len(after))
    changed = sum(a < limit for a in agreement)
    assert_threshold(f"agreement of the key frequencies {keysets[worst_epoch]} with the final {sorted(final)} after "
                     f"cleanup (Jaccard; {changed} of {len(after)} checkpoints from t3 = {phases.t3} differ)", worst,
                     limit, ">=", epoch=worst_epoch)


@pytest.mark.claim(
    id="key_frequencies_mainline",
    statement="A handful of key frequencies (3–6) carry the algorithm, and the neuron rule and the "
              "neuron-logit-map rule agree on them.",
    source=f"{NCLSS}, §4.1, App. C.2.1; ARENA key frequencies",
)
def test_key_frequencies(run, run_series, evidence, thresholds):
    th = thresholds
    p = run.spec.task.p
    params = run.final()
    rule1 = run_series.keys.keys
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    rule3 = fo.key_frequencies_by_norm(fo.fft_tokens(W_L, fo.fourier_basis(p)), p, "neuron_logit_map").keys
    agree = len(set(rule1) & set(rule3)) / max(len(set(rule1) | set(rule3)), 1)
    evidence.measure("keys (rule 1, neuron clusters)", rule1)
    evidence.measure("keys (rule 3, W_L norms > max/4)", rule3)
    lo, hi = int(th["min_keys"]), int(th["max_keys"])
    evidence.measure("number of keys (at least)", len(rule1), threshold=lo, op=">=")
    evidence.measure("number of keys (at most)", len(rule1), threshold=hi, op="<=")
    evidence.measure("agreement of rules 1 and 3 (Jaccard)", agree, threshold=th["min_rule_agreement"], op=">=")
    assert lo <= len(rule1) <= hi, f"{len(rule1)} key frequencies {rule1}; expected {lo} to {hi}"
    assert_threshold(f"agreement of rule 1 {rule1} and rule 3 {rule3}", agree, th["min_rule_agreement"], ">=")


@pytest.mark.claim(
    id="neurons_cluster_by_single_frequency",
    statement="Most neurons (≥ 75%) are explained (≥ 85%) by one frequency, and each cluster's W_L columns carry "
              "only its own frequency (≥ 90%).",
    source=f"{NCLSS}, §4.3, Fig. 5",
)
def test_neurons_cluster(run, run_series, final_activations, evidence, thresholds):
    th = thresholds
    p = run.spec.task.p
    params = run.final()
    acts = final_activations.mlp_post
    kf = fo.key_frequencies_from_neurons(acts, p, fo.frequencies(p))
    clusters = pm.neuron_clusters(kf.details["neuron_freq"], kf.details["neuron_frac"], th["neuron_fve"])
    assigned = float((clusters >= 1).double().mean())
    evidence.measure("share of neurons assigned to one frequency", assigned, threshold=th["min_assigned_share"],
                     op=">=")
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    coef = fo.fft_tokens(W_L, fo.fourier_basis(p)).pow(2)  # [p, d_mlp]
    worst = 1.0
    for k in sorted(set(clusters.tolist()) - {-1}):
        cols = clusters == k
        own = float(coef[2 * k - 1:2 * k + 1][:, cols].sum() / coef[:, cols].sum())
        evidence.measure("W_L norm in the cluster's own frequency", own, threshold=th["min_own_frequency_share"],
                         op=">=", label=f"k={k}")
        worst = min(worst, own)
    assert_threshold(f"share of neurons explained ≥ {th['neuron_fve']:.0%} by one frequency", assigned,
                     th["min_assigned_share"], ">=")
    assert_threshold("worst cluster's W_L norm in its own frequency", worst, th["min_own_frequency_share"], ">=")


@pytest.mark.claim(
    id="logits_are_sum_of_cosines",
    statement="The final logits are ≈ Σ_k α_k cos(w_k(a+b−c)) over the key frequencies (FVE ≥ 0.9), the "
              "approximation loses no accuracy in loss, and ≥ 90% of the logits' 2D Fourier norm is in key blocks.",
    source=f"{NCLSS}, §4.1–4.2; TransformerLens grokking demo",
)
def test_logits_sum_of_cosines(run, run_series, final_activations, evidence, thresholds):
    th = thresholds
    p, task = run.spec.task.p, run.task
    L = final_activations.logits.double()
    keys = run_series.keys.keys
    fit = pm.cos_sum_fit(L, keys, p)
    ce_fit = cross_entropy_f64(fit.fitted_logits, task.labels).item()
    ce = cross_entropy_f64(L, task.labels).item()
    centred = L - L.mean(0)
    kept = fo.project(centred, fo.key_directions(p, keys)).pow(2).sum().item()
    share = kept / centred.pow(2).sum().item()
    evidence.measure("FVE of the cos-sum fit", fit.fve, threshold=th["min_fve"], op=">=")
    evidence.measure("loss of the fit / loss of the logits", ce_fit / ce, threshold=th["max_fit_loss_ratio"], op="<=")
    evidence.measure("share of the logit norm in the key cos/sin(w(a+b)) directions", share,
                     threshold=th["min_key_share"], op=">=")
    assert_threshold("FVE of Σ_k α_k cos(w_k(a+b−c))", fit.fve, th["min_fve"], ">=")
    assert_threshold(f"loss of the fit ({ce_fit:.3g}) over the loss of the logits ({ce:.3g})", ce_fit / ce,
                     th["max_fit_loss_ratio"], "<=")
    assert_threshold("share of the centred logits in the key directions", share, th["min_key_share"], ">=")


@pytest.mark.claim(
    id="trig_fraction_rises_logits_before_neurons",
    statement="The share of variance in the key trig directions rises for logits, pre- and post-activations; "
              "logits rise early and reach ≥ 0.9, well ahead of the neurons; the neurons' "
              "quadratic terms appear only near grokking (median G-QUAD at t2 ≤ half its final value).",
    source=f"{ARENA} 'Development of computing trig components', 'Development of neuron activations'",
)
def test_trig_fraction(run, run_series, phases, final_activations, evidence, thresholds):
    th = thresholds
    need(phases, "t1")
    evidence.phase_lines(phases.as_dict())
    reached = {}
    for label in ("logits", "mlp_pre", "mlp_post"):
        t = s(run_series, "trig_fraction", label)
        evidence.series("trig_fraction", t.epochs, t.values, label=label)
        rise = float(t.values[-1]) / max(t.at(phases.t1), 1e-12)
        evidence.measure("final / value at t1", rise, threshold=th["min_rise"], op=">=", label=label)
        assert_threshold(f"trig fraction of {label}: final over its value at t1", rise, th["min_rise"], ">=")
        reached[label] = t.first_crossing(th["reach_fraction"] * float(t.values[-1]))
    final = float(run_series["trig_fraction"].row("logits").values[-1])
    evidence.measure("final logit trig fraction", final, threshold=th["min_final_logit_fraction"], op=">=")
    assert_threshold("final trig fraction of the logits", final, th["min_final_logit_fraction"], ">=")
    lead = reached["mlp_post"] - reached["logits"]
    margin = lead_margin(run_series.epochs, reached["logits"], reached["mlp_post"], fraction=th["lead_fraction"],
                         min_checkpoints=th["min_lead_checkpoints"])
    evidence.measure(f"lead of logits over neurons (epochs, at {th['reach_fraction']:.0%} of their final value)", lead,
                     threshold=margin, op=">=")
    assert_threshold("lead of the logits over the neurons (epochs)", lead, margin, ">=")
    # G-QUAD: the neurons' quadratic (2×2 block) terms, for the neurons assigned a frequency at the end
    need(phases, "t2")
    p = run.spec.task.p
    kf = fo.key_frequencies_from_neurons(final_activations.mlp_post, p, fo.frequencies(p))
    clusters = pm.neuron_clusters(kf.details["neuron_freq"], kf.details["neuron_frac"], th["neuron_fve"])
    assigned = clusters >= 1
    if not bool(assigned.any()):
        raise AssertionError(f"no neuron of the final model is explained ≥ {th['neuron_fve']:.0%} by one frequency: "
                             f"no quadratic terms to follow")
    quad = run_series["quadratic_fraction"]  # per neuron, for its frequency in the final model
    quad_t2 = float(quad.data[assigned, run_series.epochs.tolist().index(phases.t2)].median())
    quad_end = float(pm.quadratic_fraction(final_activations.mlp_post[:, assigned], clusters[assigned], p).median())
    ratio = quad_t2 / max(quad_end, 1e-300)
    evidence.measure("median G-QUAD(post) at t2", quad_t2, epoch=phases.t2)
    evidence.measure("median G-QUAD(post) at the end", quad_end, epoch=run.epochs[-1])
    evidence.measure("median G-QUAD(post) at t2 / at the end", ratio, threshold=th["max_quadratic_at_t2_over_final"],
                     op="<=", epoch=phases.t2)
    assert_threshold(f"median quadratic-term fraction of the assigned neurons at t2 ({quad_t2:.3g}) over its final "
                     f"value ({quad_end:.3g})", ratio, th["max_quadratic_at_t2_over_final"], "<=", epoch=phases.t2)


@pytest.mark.claim(
    id="fourier_ablations_final_model",
    statement="In the final model only the key frequencies matter: keeping just the key cos/sin(w(a+b)) logit "
              "directions, or just the 8-per-key 2D Fourier components of the logits, does not raise the loss; "
              "removing the key directions of W_L from the neurons leaves a loss worse than uniform (≥ ln p); "
              "ablating any one key frequency raises the train loss ≥ 100x.",
    source=f"{NCLSS}, §4.4; Colab cell outputs; ARENA 'Loss with just x+y components'",
)
def test_fourier_ablations(run, run_series, final_activations, evidence, thresholds):
    th = thresholds
    p, task = run.spec.task.p, run.task
    keys = run_series.keys.keys
    L = final_activations.logits.double()  # [N, p]
    labels = task.labels
    base = max(cross_entropy_f64(L, labels).item(), 1e-300)  # a loss of exactly 0 would not divide
    evidence.measure("loss of the final model (all pairs)", base, epoch=run.epochs[-1])

    restricted = pm.restricted_loss(L, labels, None, keys, p).item()
    blocks = cross_entropy_f64(pm.key_block_logits(L, keys, p), labels).item()

    # the neuron-space directions u_k, v_k through which W_L writes the key frequencies
    params = run.final()
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])  # [p, d_mlp]
    Q = pm.key_neuron_directions(W_L, keys, p)
    acts = final_activations.mlp_post.double()
    in_span = acts @ Q @ Q.T
    nullspace = cross_entropy_f64(L - in_span @ W_L.T, labels).item()
    span_only = cross_entropy_f64(L - (acts - in_span) @ W_L.T, labels).item()

    excl = run_series["excluded_loss"]
    train_final = float(run_series["train_loss"].values[-1])
    per_key = {k: float(excl.row(f"k={k}").values[-1]) / max(train_final, 1e-300) for k in keys}

    e = run.epochs[-1]
    evidence.measure("restricted (key directions only) / original", restricted / base,
                     threshold=th["max_restricted_over_original"], op="<=", epoch=e)
    evidence.measure(f"{8 * len(keys)} key 2D components only / original", blocks / base,
                     threshold=th["max_keep_blocks_over_original"], op="<=", epoch=e)
    evidence.measure("neurons without the key W_L directions: loss / ln p", nullspace / math.log(p),
                     threshold=th["min_nullspace_over_log_p"], op=">=", epoch=e)
    evidence.measure("neurons in the key W_L directions only: loss / original", span_only / base, epoch=e)
    for k, ratio in per_key.items():
        evidence.measure("excluded loss / train loss", ratio, threshold=th["min_excluded_over_original"], op=">=",
                         epoch=e, label=f"k={k}")
    assert_threshold(f"loss with only the key directions ({restricted:.3g}) over the original ({base:.3g})",
                     restricted / base, th["max_restricted_over_original"], "<=", epoch=e)
    assert_threshold(f"loss with only the {8 * len(keys)} key 2D components ({blocks:.3g}) over the original "
                     f"({base:.3g})", blocks / base, th["max_keep_blocks_over_original"], "<=", epoch=e)
    assert_threshold(f"loss without the key W_L directions ({nullspace:.3g}) over ln p ({math.log(p):.3g})",
                     nullspace / math.log(p), th["min_nullspace_over_log_p"], ">=", epoch=e)
    k_min = min(per_key, key=per_key.get)
    assert_threshold(f"train loss with key frequency {k_min} ablated over the train loss (the weakest key)",
                     per_key[k_min], th["min_excluded_over_original"], ">=", epoch=e)

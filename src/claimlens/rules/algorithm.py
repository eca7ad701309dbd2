"""Rules about the algorithm the final model implements, and the trajectory of its parts (catalogue §3.1):
key frequencies, the embedding, neurons, logits, ablations, attention. Pure functions of measured numbers
(``claimlens.metrics.algorithm``) and series; no model, no pytest.
"""

from __future__ import annotations

import math

import torch

from claimlens.metrics.algorithm import CosSumSummary, FourierAblations, HeadFit, NeuronClusters
from claimlens.metrics.progress import singular_values_for
from claimlens.rules.base import ClaimSpec, Verdict
from claimlens.rules.base import Threshold as T
from claimlens.rules.grokking import ARENA, CAT, NCLSS, REV2, Measures, _need, nonkey_share
from claimlens.series import MIN_TRAJECTORY_CHECKPOINTS, Phases, Series, lead_margin

FINAL = "final-model claim: the source's numbers are in the catalogue (no curve to check against)"

# ----------------------------------------------------------------------------- embedding

EMBEDDING_SPARSE = ClaimSpec(
    id="embedding_sparse_in_fourier_basis",
    statement="The final embedding is sparse in the Fourier basis: six frequencies hold ≥ 90% of its norm, the key "
              "frequencies among them; the other frequencies fade between t1 and t3; and its singular values "
              "collapse onto the keys (a cos/sin pair per frequency holds 90% of its norm, fewer than at t1).",
    source=f"{NCLSS}, §4.1, Fig. 3a; ARENA 'Development of the embedding' (singular values)",
    thresholds={
        "top_frequencies": T(6, f"{CAT}: six frequencies with non-negligible norm (NCLSS §4.1)", integer=True,
                             positive=True),
        "min_top_share": T(0.9, f"{CAT} (proposed)", source=0.94),
        "min_nonkey_fall": T(5, f"{CAT} (proposed): the other components go to near zero during grokking"),
        "max_extra_singular_pairs": T(1, "ours: singular values collapse onto the keys: at most 2 × (keys + this) "
                                         "singular values hold 90% of the final embedding's norm (a cos/sin pair per "
                                         "frequency; the paper's sixth frequency)", integer=True),
        "svd_norm_share": T(0.9, "ours: the share of the squared norm the counted singular values hold",
                            positive=True),
    },
    validation=FINAL,
)


def embedding_sparse(s: Measures, phases: Phases, keys: list[int], th) -> Verdict:
    """The final embedding's parts are judged on any run; the fall between t1 and t3 and the singular-value
    collapse need the phases (not judged on a run too short to locate them, failed on one that never reaches
    them)."""
    v = Verdict(EMBEDDING_SPARSE.id)
    e = s["embed_fourier_norms"]
    per_freq = e.data[1::2] + e.data[2::2]  # [(p-1)/2, n]
    final = per_freq[:, -1]
    n_top = int(th["top_frequencies"])
    top = sorted((torch.topk(final, n_top).indices + 1).tolist())
    last = int(e.epochs[-1])
    v.check(f"share of the embedding's non-constant norm in its top {n_top} frequencies",
            float(final[[k - 1 for k in top]].sum() / final.sum()), ">=", th["min_top_share"], epoch=last,
            detail=f"top {top}")
    v.record("key frequencies", keys)
    missing = sorted(set(keys) - set(top))
    v.require(not missing, f"every key frequency is among the embedding's top {n_top}",
              f"key frequencies {missing} are not among the embedding's top {n_top} {top}")
    share = th["svd_norm_share"]
    n90 = v.add_series(Series.of(f"singular values holding {share:.0%} of the embedding's norm", e.epochs,
                                 singular_values_for(share, s["embed_singular_values"].data)))
    allowed = 2 * (len(keys) + int(th["max_extra_singular_pairs"]))
    at_end = int(n90.values[-1])
    v.check(f"singular values holding {share:.0%} of the final embedding's norm", at_end, "<=", allowed,
            epoch=last, detail=f"{len(keys)} keys")
    if not _need(v, phases, "t1", "t3"):
        return v
    nonkey = v.add_series(nonkey_share(e, keys))
    v.phase_lines(phases.as_dict())
    v.check("fall of the non-key share between t1 and t3", nonkey.at(phases.t1) / nonkey.at(phases.t3), ">=",
            th["min_nonkey_fall"], epoch=phases.t3)
    v.check(f"singular values holding {share:.0%} of the norm at t1, against the end (they collapse)",
            int(n90.at(phases.t1)), ">", at_end, epoch=phases.t1)
    return v


# ----------------------------------------------------------------------------- key frequencies

KEY_FREQUENCIES = ClaimSpec(
    id="key_frequencies_mainline",
    statement="A handful of key frequencies (3–6) carry the algorithm, and the neuron rule and the "
              "neuron-logit-map rule agree on them.",
    source=f"{NCLSS}, §4.1, App. C.2.1; ARENA key frequencies",
    thresholds={
        "min_keys": T(3, f"{CAT}: other seeds use 3 or 4 keys (NCLSS App. C.2.1)", integer=True, source=5),
        "max_keys": T(6, f"{CAT}: the mainline uses 5, the embedding shows 6", integer=True, source=5),
        "min_rule_agreement": T(0.8, f"{CAT} (proposed): rules 1 and 3 agree (Jaccard)"),
    },
    validation=FINAL,
)


def key_frequencies(rule1: list[int], rule3: list[int], th) -> Verdict:
    v = Verdict(KEY_FREQUENCIES.id)
    v.record("keys (rule 1, neuron clusters, ≥ 5% of live neurons)", rule1)
    v.record("keys (rule 3, W_L norms > max/4)", rule3)
    v.check("number of key frequencies (at least)", len(rule1), ">=", th["min_keys"], detail=f"keys {rule1}")
    v.check("number of key frequencies (at most)", len(rule1), "<=", th["max_keys"], detail=f"keys {rule1}")
    agree = len(set(rule1) & set(rule3)) / max(len(set(rule1) | set(rule3)), 1)
    v.check("agreement of rules 1 and 3 (Jaccard)", agree, ">=", th["min_rule_agreement"],
            detail=f"rule 1 {rule1}, rule 3 {rule3}")
    return v


KEYS_STABLE = ClaimSpec(
    id="key_frequencies_stable_after_cleanup",
    statement="Once cleanup ends (t3) the key frequencies no longer change: at every checkpoint from t3 on, the "
              "neurons' key frequencies (G-KEY rule 1 with a 5% vote share) agree with the final ones.",
    source=f"{NCLSS}, §5.2 (a stable phase follows cleanup), App. C.2.1",
    thresholds={"min_agreement": T(0.8, f"{REV2}: Jaccard(keys(e), keys(last)) ≥ 0.8 at every checkpoint after t3")},
    validation=FINAL,
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def keys_stable(neuron_key_frequency: Series, final_keys: list[int], phases: Phases, th) -> Verdict:
    """``neuron_key_frequency``: per checkpoint, 1 where ``k`` is a key of that checkpoint's own neurons."""
    v = Verdict(KEYS_STABLE.id)
    if not _need(v, phases, "t3"):
        return v
    final = set(final_keys)
    own = neuron_key_frequency.window(start=phases.t3)
    keysets, agreement = {}, []
    for i, e in enumerate(own.epochs.tolist()):
        keys = {int(label[2:]) for label, row in zip(own.labels, own.data[:, i].tolist()) if row == 1.0}
        keysets[e] = sorted(keys)
        agreement.append(len(keys & final) / max(len(keys | final), 1))
    after = v.add_series(Series.of("agreement with the final key set (Jaccard)", own.epochs, agreement))
    v.phase_lines(phases.as_dict())
    v.record("final key frequencies (rule 1)", sorted(final))
    worst_epoch, worst = after.argmin()
    changed = sum(a < th["min_agreement"] for a in agreement)
    v.check("worst agreement of the key frequencies with the final ones after cleanup (Jaccard)", worst, ">=",
            th["min_agreement"], epoch=worst_epoch,
            detail=f"{keysets[worst_epoch]} against {sorted(final)}; {changed} of {len(after)} checkpoints from "
                   f"t3 = {phases.t3} below")
    return v


# ----------------------------------------------------------------------------- neurons

NEURONS_CLUSTER = ClaimSpec(
    id="neurons_cluster_by_single_frequency",
    statement="Most neurons (≥ 75%) are explained (≥ 85%) by one frequency, and each cluster's W_L columns carry "
              "only its own frequency (≥ 90%).",
    source=f"{NCLSS}, §4.3, Fig. 5",
    thresholds={
        "neuron_fve": T(0.85, f"{CAT}: NCLSS §4.3's 85% variance explained by one frequency"),
        "min_assigned_share": T(0.75, f"{CAT} (proposed): the paper assigns 84.6%", source=0.846),
        "min_own_frequency_share": T(0.9, f"{CAT} (proposed): each cluster's W_L carries its own frequency"),
    },
    validation=FINAL,
)


def neurons_cluster(c: NeuronClusters, epoch: int, th) -> Verdict:
    v = Verdict(NEURONS_CLUSTER.id)
    v.check(f"share of neurons explained ≥ {th['neuron_fve']:.0%} by one frequency", c.assigned_share, ">=",
            th["min_assigned_share"], epoch=epoch)
    for k, own in c.own_frequency_share.items():
        v.check("W_L norm in the cluster's own frequency", own, ">=", th["min_own_frequency_share"], epoch=epoch,
                label=f"k={k}")
    return v


NEURON_LOGIT_MAP_RANK = ClaimSpec(
    id="neuron_logit_map_is_rank_10",
    statement="The neuron-logit map W_L is ≈ Σ_k cos(w_k) u_kᵀ + sin(w_k) v_kᵀ over the key frequencies: outside "
              "the 2 × keys key rows of the Fourier basis lies ≤ 5% of its norm (0.55% in the paper).",
    source=f"{NCLSS}, §4.2, eq. 2–3",
    thresholds={"max_residual": T(0.05, f"{CAT} (proposed, shape mode; exact mode 0.0055)", source=0.0055)},
    validation=FINAL,
)


def neuron_logit_map_rank(residual: float, keys: list[int], epoch: int, th) -> Verdict:
    v = Verdict(NEURON_LOGIT_MAP_RANK.id)
    v.record("rank of the key projection (2 × keys)", 2 * len(keys), source=10)
    v.check("‖W_L − Π W_L‖_F / ‖W_L‖_F outside the key rows", residual, "<=", th["max_residual"], epoch=epoch,
            detail=f"keys {sorted(keys)}")
    return v


# ----------------------------------------------------------------------------- logits

LOGITS_COS_SUM = ClaimSpec(
    id="logits_are_sum_of_cosines",
    statement="The final logits are ≈ Σ_k α_k cos(w_k(a+b−c)) over the key frequencies (FVE ≥ 0.9), the "
              "approximation loses no accuracy in loss, and ≥ 90% of the logits' norm is in the key directions.",
    source=f"{NCLSS}, §4.1–4.2; TransformerLens grokking demo",
    thresholds={
        "min_fve": T(0.9, f"{CAT} (proposed): the paper reports 95%", source=0.95),
        "max_fit_loss_ratio": T(1, f"{CAT} (proposed): the approximation does not raise the loss",
                                source=4.7e-8 / 2.4e-7),
        "min_key_share": T(0.9, f"{CAT} (proposed)"),
    },
    validation=FINAL,
)


def logits_cos_sum(c: CosSumSummary, epoch: int, th) -> Verdict:
    v = Verdict(LOGITS_COS_SUM.id)
    v.check("FVE of Σ_k α_k cos(w_k(a+b−c))", c.fve, ">=", th["min_fve"], epoch=epoch)
    v.check("loss of the fit over the loss of the logits", c.fit_loss_ratio, "<=", th["max_fit_loss_ratio"],
            epoch=epoch, detail=f"{c.fit_loss:.3g} against {c.loss:.3g}")
    v.check("share of the centred logits in the key cos/sin(w(a+b)) directions", c.key_share, ">=",
            th["min_key_share"], epoch=epoch)
    return v


# ----------------------------------------------------------------------------- ablations

FOURIER_ABLATIONS = ClaimSpec(
    id="fourier_ablations_final_model",
    statement="In the final model only the key frequencies matter: keeping just the key cos/sin(w(a+b)) logit "
              "directions, or just the 8-per-key 2D Fourier components of the logits, does not raise the loss; "
              "removing the key directions of W_L from the neurons leaves a loss worse than uniform (≥ ln p); "
              "ablating any one key frequency raises the train loss ≥ 100x.",
    source=f"{NCLSS}, §4.4; Colab cell outputs; ARENA 'Loss with just x+y components'",
    thresholds={
        "max_restricted_over_original": T(1, f"{CAT} (proposed): keeping only key directions does not hurt",
                                          source=5.54e-8 / 2.41e-7),
        "max_keep_blocks_over_original": T(1, f"{CAT} (proposed): keeping the 8 x keys 2D components does not hurt",
                                           source=7.24e-8 / 2.41e-7),
        "min_nullspace_over_log_p": T(1, f"{REV2}: unchanged, 'worse than uniform'", source=1.11),
        "min_excluded_over_original": T(100, f"{CAT} (proposed): ablating any one key frequency hurts"),
    },
    validation=FINAL,
)


def fourier_ablations(a: FourierAblations, per_key: dict[int, float], p: int, epoch: int, th) -> Verdict:
    v = Verdict(FOURIER_ABLATIONS.id)
    base = max(a.loss, 1e-300)  # a loss of exactly 0 would not divide
    v.record("loss of the final model (all pairs)", a.loss, epoch=epoch)
    v.check("loss with only the key directions over the original", a.restricted / base, "<=",
            th["max_restricted_over_original"], epoch=epoch, detail=f"{a.restricted:.3g} against {a.loss:.3g}")
    v.check("loss with only the key 2D components (8 per key) over the original", a.key_blocks / base, "<=",
            th["max_keep_blocks_over_original"], epoch=epoch, detail=f"{a.key_blocks:.3g} against {a.loss:.3g}")
    v.check("loss without the key W_L directions over ln p", a.nullspace / math.log(p), ">=",
            th["min_nullspace_over_log_p"], epoch=epoch, detail=f"{a.nullspace:.3g} against {math.log(p):.3g}")
    v.record("neurons in the key W_L directions only: loss / original", a.span_only / base, epoch=epoch)
    for k, ratio in per_key.items():
        v.check("train loss with the key frequency ablated over the train loss", ratio, ">=",
                th["min_excluded_over_original"], epoch=epoch, label=f"k={k}")
    return v


SKIP_AND_ATTENTION_ABLATIONS = ClaimSpec(
    id="skip_and_attention_ablation_sizes",
    statement="In the final model the MLP's skip connection hardly matters (zero-ablating it raises the loss ≤ 10x) "
              "while the attention heads are essential (zero-ablating them leaves a loss ≥ ln p).",
    source=f"{NCLSS}, App. A.1",
    thresholds={
        "max_mlp_skip_over_original": T(10, f"{CAT} (proposed)", source=9.12e-7 / 2.4e-7),
        "min_attention_over_log_p": T(1, f"{CAT} (proposed): worse than uniform", source=24.3 / math.log(113)),
    },
    validation=FINAL,
)


def skip_and_attention_ablations(loss: float, mlp_skip: float, attention: float, p: int, epoch: int, th
                                 ) -> Verdict:
    v = Verdict(SKIP_AND_ATTENTION_ABLATIONS.id)
    v.record("loss of the final model (all pairs)", loss, epoch=epoch, source=2.4e-7)
    v.check("loss with the MLP skip connection zero-ablated over the original", mlp_skip / max(loss, 1e-300), "<=",
            th["max_mlp_skip_over_original"], epoch=epoch, detail=f"{mlp_skip:.3g} against {loss:.3g}")
    v.check("loss with the attention heads zero-ablated over ln p", attention / math.log(p), ">=",
            th["min_attention_over_log_p"], epoch=epoch, detail=f"{attention:.3g} against {math.log(p):.3g}")
    return v


ATTENTION_HEADS_FIT = ClaimSpec(
    id="attention_heads_single_frequency_fit",
    statement="Each head's attention from '=' to a is ≈ c + α(cos w_k a − cos w_k b) + β(sin w_k a − sin w_k b) for "
              "one frequency k (FVE ≥ 0.95 per head).",
    source=f"{NCLSS}, App. C.1.2–C.1.3, Table 2",
    thresholds={"min_fve": T(0.95, f"{CAT} (proposed): the paper's heads explain 97.9–99.1%", source=0.979)},
    validation=FINAL,
)


def attention_heads_fit(fits: list[HeadFit], epoch: int, th) -> Verdict:
    v = Verdict(ATTENTION_HEADS_FIT.id)
    for h, fit in enumerate(fits):
        v.check("FVE of the best single-frequency fit", fit.fve, ">=", th["min_fve"], epoch=epoch, label=f"head={h}",
                detail=f"k = {fit.frequency}")
    return v


# ----------------------------------------------------------------------------- commutativity of the final model

SYMMETRIC_WEIGHTS = ClaimSpec(
    id="commutativity_symmetric_weights_and_neurons",
    statement="In the final model the position embeddings of a and b are nearly equal and neuron activations "
              "satisfy N(a, b) ≈ N(b, a).",
    source="ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1",
    thresholds={
        "min_position_cosine": T(0.9, f"{CAT} (proposed)"),
        "max_neuron_asymmetry": T(0.05, f"{CAT} (proposed): G-CMP(N, Nᵀ)"),
    },
    validation=FINAL,
)


def symmetric_weights(position_cosine: float, neuron_asymmetry: float, epoch: int, th) -> Verdict:
    v = Verdict(SYMMETRIC_WEIGHTS.id)
    v.check("cosine of the position embeddings of a and b", position_cosine, ">=", th["min_position_cosine"],
            epoch=epoch)
    v.check("G-CMP of neuron activations N(a,b) vs N(b,a)", neuron_asymmetry, "<=", th["max_neuron_asymmetry"],
            epoch=epoch)
    return v


SWAP_INVARIANT = ClaimSpec(
    id="commutativity_output_swap_invariant",
    statement="The grokked model's output is invariant under swapping a and b (checked on inputs drawn by "
              "hypothesis).",
    source="ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1",
    thresholds={"max_logit_asymmetry": T(0.05, f"{CAT} (proposed): G-CMP of the logits of (a, b) and (b, a)")},
    validation=FINAL,
)


# ----------------------------------------------------------------------------- trig fractions

TRIG_FRACTION = ClaimSpec(
    id="trig_fraction_rises_logits_before_neurons",
    statement="The share of variance in the key trig directions rises for logits, pre- and post-activations; "
              "logits rise early and reach ≥ 0.9, well ahead of the neurons; the neurons' quadratic terms appear "
              "only near grokking (median G-QUAD at t2 ≤ half its final value).",
    source=f"{ARENA} 'Development of computing trig components', 'Development of neuron activations'",
    thresholds={
        "min_rise": T(3, f"{CAT} (proposed): final ≥ 3x its value at t1"),
        "min_final_logit_fraction": T(0.9, f"{CAT} (proposed)"),
        "lead_fraction": T(0.1, f"{CAT} (proposed): 1000 epochs of lead at the paper's ~9.4k, as a share of the epoch "
                                "the neurons reach theirs (as for the restricted-loss lead)"),
        "min_lead_checkpoints": T(2, f"{CAT}: more than the checkpoint spacing around the two events", integer=True),
        "reach_fraction": T(0.5, f"{CAT} (proposed): the lead is read where each reaches 50% of its final value",
                            positive=True),
        "neuron_fve": T(0.85, f"{CAT}: neurons assigned a frequency for G-QUAD (NCLSS §4.3's 85%)"),
        "max_quadratic_at_t2_over_final": T(0.5, f"{CAT} (proposed): quadratic terms appear near grokking"),
    },
    validation="unvalidated: no digitised trig-fraction curve",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def trig_fraction(s: Measures, phases: Phases, assigned: torch.Tensor, th) -> Verdict:
    """``assigned [M]`` bool: the neurons of the final model explained ≥ ``neuron_fve`` by one frequency."""
    v = Verdict(TRIG_FRACTION.id)
    if not _need(v, phases, "t1"):
        return v
    v.phase_lines(phases.as_dict())
    t = s["trig_fraction"]
    reached = {}
    for label in ("logits", "mlp_pre", "mlp_post"):
        row = t.row(label)
        v.add_series(Series("trig_fraction", row.epochs, row.data), label=label)
        v.check(f"trig fraction of {label}: final over its value at t1",
                float(row.values[-1]) / max(row.at(phases.t1), 1e-12), ">=", th["min_rise"], label=label)
        reached[label] = row.first_crossing(th["reach_fraction"] * float(row.values[-1]))
    v.check("final trig fraction of the logits", float(t.row("logits").values[-1]), ">=",
            th["min_final_logit_fraction"], epoch=int(t.epochs[-1]))
    if reached["logits"] is not None and reached["mlp_post"] is not None:
        margin = lead_margin(t.epochs, reached["logits"], reached["mlp_post"], fraction=th["lead_fraction"],
                             min_checkpoints=th["min_lead_checkpoints"])
        v.check(f"lead of the logits over the neurons (epochs, at {th['reach_fraction']:.0%} of their final value)",
                reached["mlp_post"] - reached["logits"], ">=", margin)
    if not _need(v, phases, "t2"):
        return v
    if not v.require(bool(assigned.any()), "some neuron is explained by one frequency",
                     f"no neuron of the final model is explained ≥ {th['neuron_fve']:.0%} by one frequency: no "
                     f"quadratic terms to follow"):
        return v
    quad = s["quadratic_fraction"]  # per neuron, for its frequency in the final model
    at_t2 = float(quad.data[assigned, quad.epochs.tolist().index(phases.t2)].median())
    at_end = float(quad.data[assigned, -1].median())
    v.record("median G-QUAD(post) at t2", at_t2, epoch=phases.t2)
    v.record("median G-QUAD(post) at the end", at_end, epoch=int(quad.epochs[-1]))
    v.check("median quadratic-term fraction of the assigned neurons at t2 over its final value",
            at_t2 / max(at_end, 1e-300), "<=", th["max_quadratic_at_t2_over_final"], epoch=phases.t2,
            detail=f"{at_t2:.3g} against {at_end:.3g}")
    return v

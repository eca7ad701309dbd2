"""The trajectory rules of Nanda et al. 2023 (catalogue §3.1, Revision 2): pure functions of per-epoch series.

Each rule takes the series it reads (``s["test_loss"]`` … as :class:`claimlens.series.Series`, from a run's
analysis or from the source's digitised curves alike), the phase boundaries (:class:`claimlens.series.Phases`)
and the claim's thresholds, and returns a :class:`~claimlens.rules.base.Verdict`. Thresholds carry the source's
own value of each quantity, read off the digitised curves (``claimlens/reference/nanda2022/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from claimlens.rules.base import ClaimSpec, Verdict
from claimlens.rules.base import Threshold as T
from claimlens.series import MIN_TRAJECTORY_CHECKPOINTS, Phases, Series, lead_margin

NCLSS = "Nanda et al. 2023, 'Progress measures for grokking via mechanistic interpretability'"
ARENA = "ARENA 'Grokking and modular arithmetic: analysis during training'"
CAT = "catalogue §3.1"
REV2 = "catalogue Revision 2"
CURVES = "source curves (reference/nanda2022)"

Measures = Mapping[str, Series]


def _need(v: Verdict, phases: Phases, *names: str) -> bool:
    """A failed check when the run never reached the phase boundaries the claim is about; a part not judged when
    its checkpoints are too few to locate any phase."""
    if phases.unresolved:
        v.not_judged(f"phase boundaries {', '.join(names)} reached", phases.unresolved)
        return False
    missing = [n for n in names if getattr(phases, n) is None]
    return v.require(not missing, f"phase boundaries {', '.join(names)} reached",
                     f"phase boundaries {missing} were not reached in this run ({phases.as_dict()}); the claim is "
                     f"about phases the run does not have")


# ----------------------------------------------------------------------------- delayed generalisation

DELAYED_GENERALISATION = ClaimSpec(
    id="grokking_delayed_generalisation",
    statement="Train accuracy saturates early; test accuracy is still low (≤ 0.5) when memorisation ends (t1), "
              "stays low for many times longer, then rises to ~100%.",
    source=f"{NCLSS}, §3 and Fig. 2",
    thresholds={
        "memorised_train_acc": T(0.99, f"{CAT}: train accuracy counted as memorised"),
        "memorised_by_epoch": T(2000, f"{CAT} (proposed): train accuracy saturates early, by epoch 2000",
                                source=200),
        "generalised_test_acc": T(0.95, f"{CAT}: test accuracy that marks generalisation for the delay ratio"),
        "final_test_acc": T(0.99, f"{CAT}: the run ends generalised", source=1.0),
        "delay_ratio": T(5, f"{CAT} (proposed): the paper's delay is an order of magnitude (1.4k vs 10k–14k)",
                         source=51.5),
        "max_test_acc_at_t1": T(0.5, f"{CAT} (proposed): still not generalised when memorisation ends", source=0.07),
    },
    validation=CURVES,
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def delayed_generalisation(train_acc: Series, test_acc: Series, phases: Phases | None, th) -> Verdict:
    """Train accuracy ≥ 0.99 early, test accuracy ≤ 0.5 at t1, ≥ 0.99 at the end, and a delay ratio ≥ 5.

    ``phases`` None: the t1 part is not judged (a run without the transformer's excluded loss)."""
    v = Verdict(DELAYED_GENERALISATION.id)
    if len(train_acc) < 10:
        return v.skip(f"the training log has {len(train_acc)} rows; need ≥ 10 epochs")
    v.add_series(train_acc)
    v.add_series(test_acc)
    memorised = train_acc.first_crossing(th["memorised_train_acc"])
    generalised = test_acc.first_crossing(th["generalised_test_acc"])
    v.check(f"first epoch with train accuracy ≥ {th['memorised_train_acc']:g}", memorised, "<=",
            th["memorised_by_epoch"],
            missing=f"train accuracy never reached {th['memorised_train_acc']:g} "
                    f"(max {float(train_acc.values.max()):.3f})")
    v.check("test accuracy at the last epoch (the run did not generalise)", float(test_acc.values[-1]), ">=",
            th["final_test_acc"], epoch=int(test_acc.epochs[-1]))
    ratio = None if memorised is None or generalised is None else generalised / max(memorised, 1)
    v.check("generalisation delay: first epoch of generalisation over first epoch of memorisation", ratio, ">=",
            th["delay_ratio"], detail=f"test acc ≥ {th['generalised_test_acc']:g} at {generalised}, train acc ≥ "
                                      f"{th['memorised_train_acc']:g} at {memorised}",
            missing=f"test accuracy never reached {th['generalised_test_acc']:g} "
                    f"(max {float(test_acc.values.max()):.3f})" if generalised is None else "no memorisation epoch")
    if phases is None:
        v.not_judged("test accuracy at the end of memorisation (t1)", "t1 needs the transformer's excluded loss")
    elif _need(v, phases, "t1"):
        v.phase_lines(phases.as_dict())
        v.check("test accuracy at the end of memorisation (t1)", test_acc.at(phases.t1), "<=",
                th["max_test_acc_at_t1"], epoch=phases.t1)
    return v


# ----------------------------------------------------------------------------- phases

PHASE_BOUNDARIES = ClaimSpec(
    id="phase_boundaries_mainline",
    statement="Training splits into memorisation, circuit formation and cleanup: t1 < t2 < t3 (shape mode).",
    source=f"{NCLSS}, §5.2, Fig. 7",
    validation=f"{CURVES}: t1 ≈ 1 300, t2 ≈ 9 610, t3 ≈ 14 220 against the paper's 1.4k / 9.4k / 14k",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def phase_boundaries(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(PHASE_BOUNDARIES.id)
    v.phase_lines(phases.as_dict())
    v.add_series(s["excluded_loss_all_keys"], log=True)
    v.add_series(s["test_loss"], log=True)
    if _need(v, phases, "t1", "t2", "t3"):
        for name, source in (("t1", 1300), ("t2", 9610), ("t3", 14220)):
            v.record(name, getattr(phases, name), source=source)
        v.require(phases.t1 < phases.t2, "memorisation end t1 before circuit-formation end t2",
                  f"t1 = {phases.t1} is not before t2 = {phases.t2}")
        v.require(phases.t2 < phases.t3, "circuit-formation end t2 before cleanup end t3",
                  f"t2 = {phases.t2} is not before t3 = {phases.t3}")
    return v


# ----------------------------------------------------------------------------- excluded loss

EXCLUDED_LOSS_RISES = ClaimSpec(
    id="excluded_loss_rises_during_circuit_formation",
    statement="Excluded loss (key frequencies removed) falls with the train loss in memorisation, then rises "
              "by at least an order of magnitude during circuit formation while the train loss stays flat; removing "
              "two random directions instead does almost nothing.",
    source=f"{NCLSS}, §5.1–5.2, Fig. 7 and 15; ARENA 'Excluded loss'",
    thresholds={
        "max_memorisation_ratio": T(0.1, f"{REV2} (a): falls in memorisation, excl(t1) ≤ 0.1 × excl(first)",
                                    source=0.066),
        "min_log10_rise": T(1, f"{REV2} (b): rises in circuit formation, log10 excl(t2)/excl(t1) ≥ 1", source=1.60),
        "max_abs_log10_train_change": T(1, f"{REV2} (c): train loss flat meanwhile", source=0.39),
        "max_random_control_ratio": T(2, f"{CAT} (proposed) (d): removing two random directions does almost "
                                         "nothing"),
    },
    validation=f"{CURVES}: (a)–(c); (d) needs weights",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def excluded_loss_rises(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(EXCLUDED_LOSS_RISES.id)
    excl, train = v.add_series(s["excluded_loss_all_keys"], log=True), v.add_series(s["train_loss"], log=True)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t2"):
        return v
    t1, t2 = phases.t1, phases.t2
    first = int(excl.epochs[0])
    v.check("excluded loss at t1 over its value at the first checkpoint", excl.at(t1) / float(excl.values[0]), "<=",
            th["max_memorisation_ratio"], epoch=t1, detail=f"first checkpoint: epoch {first}")
    v.check("excluded loss rise t1→t2 (log10)", math.log10(excl.at(t2) / excl.at(t1)), ">=", th["min_log10_rise"],
            epoch=t2)
    v.check("train loss change t1→t2 (|log10|)", abs(math.log10(train.at(t2) / train.at(t1))), "<=",
            th["max_abs_log10_train_change"], epoch=t2)
    v.record("excluded loss at t1 over train loss at t1 (dropped part of the rule)", excl.at(t1) / train.at(t1),
             epoch=t1, source=7e5)
    if "random_direction_control" in s:
        v.check("random-direction control: train loss ratio at t2", s["random_direction_control"].at(t2), "<",
                th["max_random_control_ratio"], epoch=t2)
    else:
        v.not_judged("random-direction control: train loss ratio at t2", "needs weights")
    return v


# ----------------------------------------------------------------------------- restricted loss

RESTRICTED_LOSS_LEADS = ClaimSpec(
    id="restricted_loss_falls_before_test_loss",
    statement="Restricted (trig) loss falls by 10x after memorisation well before the test loss does.",
    source=f"{NCLSS}, Fig. 7 (top right); ARENA 'Small lag to clean up noise'",
    thresholds={
        "fall_factor": T(10, f"{CAT} (proposed): 'falls' = 10x below its value at t1", positive=True),
        "lead_fraction": T(0.1, f"{CAT} (proposed): 1000 epochs of lead at the paper's ~9.4k, as a share of the epoch "
                                "the test loss falls (a lead in epochs or checkpoints would depend on the run's "
                                "length and saving cadence)", source=0.175),
        "min_lead_checkpoints": T(2, f"{CAT}: 'a margin larger than checkpoint spacing'", integer=True),
    },
    validation=f"{CURVES}: restricted loss 10x down at 8 000, test loss at 9 700",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def restricted_loss_leads(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(RESTRICTED_LOSS_LEADS.id)
    restricted, test = s["trig_loss_all"], s["test_loss"]
    v.add_series(Series("restricted_loss[all]", restricted.epochs, restricted.data), log=True)
    v.add_series(test, log=True)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1"):
        return v
    fall = th["fall_factor"]
    t_r = restricted.first_crossing(restricted.at(phases.t1) / fall, "below", after=phases.t1)
    t_t = test.first_crossing(test.at(phases.t1) / fall, "below", after=phases.t1)
    v.record(f"restricted loss {fall:g}x below its t1 value", t_r, source=8000)
    v.record(f"test loss {fall:g}x below its t1 value", t_t, source=9700)
    if t_r is None or t_t is None:
        v.require(False, f"restricted loss falls {fall:g}x before the test loss does",
                  f"{'restricted' if t_r is None else 'test'} loss never fell {fall:g}x below its value at t1")
        return v
    epochs = sorted(set(restricted.epochs.tolist()) | set(test.epochs.tolist()))
    margin = lead_margin(epochs, t_r, t_t, fraction=th["lead_fraction"], min_checkpoints=th["min_lead_checkpoints"])
    v.check("lead of the restricted loss over the test loss (epochs)", t_t - t_r, ">=", margin, source=1700,
            detail=f"restricted at {t_r}, test at {t_t}")
    v.record("lead over the test-loss epoch", (t_t - t_r) / t_t, source=0.175)
    return v


# ----------------------------------------------------------------------------- trig loss identity

TRIG_LOSS_IDENTITY = ClaimSpec(
    id="trig_loss_all_equals_train",
    kind="identity",
    statement="Trig (restricted) loss on all data equals trig loss on the training set at every checkpoint, once "
              "the training set's classes are weighted equally: the restricted logits are a function of a + b only.",
    source="ARENA 'Analysis during training' (trig loss); NCLSS Fig. 7; catalogue Revision 2",
    thresholds={
        "max_relative_difference": T(1e-6, f"{REV2}: class-balanced train vs all-pairs restricted loss "
                                           "(float64 rounding)", source=1.9e-16),
        "raw_gap_reference": T(0.05, f"{CAT}: the raw |log10(train / all)| is recorded against the ~12% band of "
                                     "'identical' lines on a log plot (not judged)", source=0.041),
    },
    validation=f"{CURVES}: raw gap ≤ 0.041 after epoch 1 400",
)


def trig_loss_identity(all_pairs: float, train: float, train_balanced: float | None, epoch: int, n_keys: int, th
                       ) -> Verdict:
    """At one checkpoint: ``train_balanced`` (each class's train pairs weighted equally; None where a class has no
    train pair) equals ``all_pairs`` within ``max_relative_difference``."""
    v = Verdict(TRIG_LOSS_IDENTITY.id)
    if n_keys == 0:
        return v.skip("the run has no key frequency, so there is no restricted loss to compare")
    v.record("trig loss, all pairs", all_pairs, epoch=epoch)
    v.record("trig loss, train pairs", train, epoch=epoch)
    v.record("|log10(train / all)| (raw, classes as sampled)", abs(math.log10(train / all_pairs)), epoch=epoch,
             source=th["raw_gap_reference"].source)
    if train_balanced is None:
        return v.skip("a class has no training pair, so the class-balanced train loss is undefined")
    rel = abs(train_balanced - all_pairs) / max(abs(all_pairs), 1e-300)
    v.check("relative difference of the class-balanced train trig loss and the all-pairs trig loss", rel, "<=",
            th["max_relative_difference"], epoch=epoch, detail=f"{train_balanced:.6g} against {all_pairs:.6g}")
    return v


# ----------------------------------------------------------------------------- test / restricted ratio

RATIO_PEAKS_AND_RETURNS = ClaimSpec(
    id="test_over_restricted_ratio_peaks_then_returns",
    statement="Test loss / restricted loss grows during circuit formation (10^4–10^5 in the paper), peaks "
              "between t1 and t3, and returns to a low ratio after cleanup.",
    source=f"{NCLSS}, Fig. 7; ARENA text",
    thresholds={
        "min_peak_ratio": T(1e3, f"{CAT} (proposed): published 1e4–1e5, room for seed variation", source=1.9e4),
        "max_late_median_ratio": T(10, f"{REV2}: the median over checkpoints in [1.5·t3, last] returns low",
                                   source=5.5),
        "late_start_over_t3": T(1.5, f"{REV2}: the window of the return starts at 1.5·t3", positive=True),
    },
    validation=CURVES,
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def ratio_peaks_and_returns(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(RATIO_PEAKS_AND_RETURNS.id)
    test, restricted = s["test_loss"], s["trig_loss_all"]
    ratio = _ratio("test_loss / restricted_loss", test, restricted)
    v.add_series(ratio, log=True)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t3"):
        return v
    epoch, peak = ratio.argmax()
    v.check("max test/restricted ratio", peak, ">=", th["min_peak_ratio"], epoch=epoch)
    v.require(phases.t1 <= epoch <= phases.t3, "the ratio peaks within [t1, t3]",
              f"the ratio peaks at epoch {epoch}, outside [t1, t3] = [{phases.t1}, {phases.t3}]")
    start = th["late_start_over_t3"] * phases.t3
    last = int(ratio.epochs[-1])
    if last < start:
        v.not_judged("median ratio over [1.5·t3, last]", f"the run ends at epoch {last}, before 1.5·t3 = {start:g}")
    else:
        late = ratio.window(start=math.ceil(start))
        v.check("median test/restricted ratio from 1.5·t3 on", float(late.values.median()), "<=",
                th["max_late_median_ratio"], detail=f"epochs {int(late.epochs[0])}…{last}")
    return v


def _ratio(name: str, a: Series, b: Series) -> Series:
    """``a / b`` at the epochs both have."""
    common = sorted(set(a.epochs.tolist()) & set(b.epochs.tolist()))
    ia = [a.epochs.tolist().index(e) for e in common]
    ib = [b.epochs.tolist().index(e) for e in common]
    return Series.of(name, common, a.values[ia] / b.values[ib])


# ----------------------------------------------------------------------------- Gini

GINI_JUMPS = ClaimSpec(
    id="gini_fourier_sparsity_jumps_in_cleanup",
    statement="The Gini coefficients of the Fourier norms of W_E and W_L stay flat in memorisation and rise "
              "sharply during cleanup: their rate of increase in cleanup is at least twice that in circuit formation.",
    source=f"{NCLSS}, §5.1, Fig. 7 (bottom left)",
    thresholds={
        "min_cleanup_over_formation_rate": T(2, f"{REV2}: 'sharply' is a rate: mean dG/dt in [t2, t3] ≥ 2 × in "
                                                "[t1, t2]"),
        "min_cleanup_rise": T(0.1, f"{CAT} (proposed): ΔG(t2→t3) ≥ 0.1"),
        "min_final_gini_W_E": T(0.6, f"{CAT} (proposed): between random (~0.05) and ideal 5-of-56 (~0.9)"),
    },
    validation="unvalidated: no digitised Gini curve",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def gini_jumps(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(GINI_JUMPS.id)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t2", "t3"):
        return v
    t1, t2, t3 = phases.t1, phases.t2, phases.t3
    for name in ("gini_W_E", "gini_W_L"):
        g = v.add_series(s[name])
        formation = (g.at(t2) - g.at(t1)) / (t2 - t1) * 1000
        cleanup = (g.at(t3) - g.at(t2)) / (t3 - t2) * 1000
        v.record(f"{name}: mean dG/dt in formation (per 1k epochs)", formation)
        v.check(f"{name}: mean dG/dt in cleanup (per 1k epochs), against {th['min_cleanup_over_formation_rate']:g}×"
                f" the formation rate", cleanup, ">=", th["min_cleanup_over_formation_rate"] * max(formation, 0.0))
        v.check(f"{name}: ΔG(t2→t3)", g.at(t3) - g.at(t2), ">=", th["min_cleanup_rise"], epoch=t3)
    g = s["gini_W_E"]
    v.check("final G(W_E)", float(g.values[-1]), ">=", th["min_final_gini_W_E"], epoch=int(g.epochs[-1]))
    return v


# ----------------------------------------------------------------------------- weight norm

WEIGHT_NORM_FALLS = ClaimSpec(
    id="weight_norm_falls_in_phases",
    statement="The total sum of squared weights falls during circuit formation and cleanup (by ≥ 2x from t1 to t3), "
              "then plateaus.",
    source=f"{NCLSS}, Fig. 7 (bottom right); ARENA 'sum of squared weights'",
    thresholds={
        "max_t3_over_t1": T(0.5, f"{REV2} (i): Σθ²(t3) ≤ 0.5 Σθ²(t1)", source=0.29),
        "max_slope": T(0, f"{REV2} (ii): the mean slopes over [t1, t2] and [t2, t3] are both < 0 (per 1k epochs)",
                       source=-186),
        "max_plateau_change": T(0.10, f"{REV2} (iii): |Σθ²(last)/Σθ²(t3) − 1| on runs that extend ≥ 1.5·t3",
                                source=0.037),
        "plateau_start_over_t3": T(1.5, f"{REV2} (iii): judged only on runs that extend to 1.5·t3", positive=True),
    },
    validation=CURVES,
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def weight_norm_falls(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict(WEIGHT_NORM_FALLS.id)
    ssw = v.add_series(s["sum_sq_weights"])
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t2", "t3"):
        return v
    t1, t2, t3 = phases.t1, phases.t2, phases.t3
    v.check("Σθ² at t3 over Σθ² at t1", ssw.at(t3) / ssw.at(t1), "<=", th["max_t3_over_t1"], epoch=t3)
    formation = (ssw.at(t2) - ssw.at(t1)) / (t2 - t1) * 1000
    cleanup = (ssw.at(t3) - ssw.at(t2)) / (t3 - t2) * 1000
    v.check("mean slope of Σθ² in circuit formation [t1, t2] (per 1k epochs)", formation, "<", th["max_slope"])
    v.check("mean slope of Σθ² in cleanup [t2, t3] (per 1k epochs)", cleanup, "<", th["max_slope"], source=-201)
    v.record("cleanup slope over formation slope (not judged: the source's curve gives 1.08)",
             cleanup / formation if formation else None, source=1.08)
    last = int(ssw.epochs[-1])
    if last < th["plateau_start_over_t3"] * t3:
        v.not_judged("plateau after t3", f"the run ends at epoch {last}, before 1.5·t3 = "
                                         f"{th['plateau_start_over_t3'] * t3:g}")
    else:
        v.check("|Σθ²(last)/Σθ²(t3) − 1| (plateau)", abs(float(ssw.values[-1]) / ssw.at(t3) - 1), "<=",
                th["max_plateau_change"], epoch=last, detail=f"epochs {t3}…{last}")
    return v


# ----------------------------------------------------------------------------- embedding dynamics

def nonkey_share(embed_fourier_norms: Series, keys: list[int]) -> Series:
    """Per epoch, the share of the embedding's non-constant squared Fourier norm outside the key frequencies."""
    e = embed_fourier_norms.data  # [p, n] squared norms per basis row
    per_freq = e[1::2] + e[2::2]
    key_rows = torch.tensor([k - 1 for k in keys], dtype=torch.int64)
    return Series("non-key share of the embedding norm", embed_fourier_norms.epochs,
                  1 - per_freq[key_rows].sum(0) / per_freq.sum(0))


# ----------------------------------------------------------------------------- commutativity (attention)

COMMUTATIVITY_ATTENTION = ClaimSpec(
    id="commutativity_attention_symmetric_after_grokking",
    statement="Attention from '=' to a and b is unequal during memorisation and equal after cleanup; '=' stops "
              "attending to itself.",
    source="ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1",
    thresholds={
        "max_gap_after_t3": T(0.05, f"{CAT} (proposed): mean_h |A[h,0] − A[h,1]| after cleanup"),
        "max_self_attention": T(0.01, f"{REV2}: max_h A[h,2] at every checkpoint in [t3, min(2·t3, last)]",
                                source=0.004),
        "self_attention_window_over_t3": T(2, f"{REV2}: the window ends at 2·t3 (or the last checkpoint)",
                                           positive=True),
    },
    validation="unvalidated: no digitised attention curve",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def attention_gap(attention_to_position: Series, n_heads: int) -> tuple[Series, Series]:
    """mean over heads of ``|A[h,0] − A[h,1]|`` and max over heads of ``A[h,2]``, per epoch."""
    a = attention_to_position
    gap = torch.stack([(a.row(f"head={h},pos=0").values - a.row(f"head={h},pos=1").values).abs()
                       for h in range(n_heads)]).mean(0)
    self_attn = torch.stack([a.row(f"head={h},pos=2").values for h in range(n_heads)]).max(0).values
    return Series("mean_h |A[h,0] − A[h,1]|", a.epochs, gap), Series("max_h A[h,2]", a.epochs, self_attn)


def commutativity_attention(s: Measures, phases: Phases, n_heads: int, th) -> Verdict:
    v = Verdict(COMMUTATIVITY_ATTENTION.id)
    gap, self_attn = attention_gap(s["attention_to_position"], n_heads)
    v.add_series(gap)
    v.add_series(self_attn)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t3"):
        return v
    worst_epoch, worst = gap.window(start=phases.t3).argmax()
    v.check("mean_h |A[h,0] − A[h,1]| after cleanup (worst checkpoint)", worst, "<=", th["max_gap_after_t3"],
            epoch=worst_epoch)
    v.check("attention gap at t1, against its post-cleanup maximum (commutativity emerges)", gap.at(phases.t1), ">",
            worst, epoch=phases.t1)
    end = min(int(th["self_attention_window_over_t3"] * phases.t3), int(self_attn.epochs[-1]))
    e, top = self_attn.window(start=phases.t3, end=end).argmax()
    v.check("max_h attention from '=' to itself in [t3, 2·t3] (worst checkpoint)", top, "<=",
            th["max_self_attention"], epoch=e, detail=f"epochs {phases.t3}…{end}")
    return v


LATE_PHASE_CHANGE = ClaimSpec(
    id="late_phase_change_after_cleanup",
    kind="informational",
    statement="Long after cleanup (~43k epochs in the source run) some attention from '=' to itself returns and "
              "the weight norm's slope changes (Σθ² 955 → 942).",
    source=f"{ARENA} 'Development of commutativity' and 'sum of squared weights' (Colab text)",
    thresholds={
        "min_run_over_t3": T(3, f"{REV2}: reported on runs that extend beyond 3·t3", positive=True),
        "search_start_over_t3": T(2, f"{REV2}: the largest rise of max_h A[h,2] after 2·t3", positive=True),
    },
    validation="informational: the digitised curves end before it",
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def late_phase_change(s: Measures, phases: Phases, n_heads: int, th) -> Verdict:
    v = Verdict(LATE_PHASE_CHANGE.id)
    _, self_attn = attention_gap(s["attention_to_position"], n_heads)
    ssw = s["sum_sq_weights"]
    v.phase_lines(phases.as_dict())
    if phases.t3 is None:
        return v.skip(f"the run never reached t3 ({phases.as_dict()}); nothing happens after a cleanup it lacks")
    last = int(ssw.epochs[-1])
    if last <= th["min_run_over_t3"] * phases.t3:
        return v.skip(f"the run ends at epoch {last}, not beyond 3·t3 = {th['min_run_over_t3'] * phases.t3:g}")
    v.add_series(self_attn)
    v.add_series(ssw)
    late = self_attn.window(start=math.ceil(th["search_start_over_t3"] * phases.t3))
    rises = late.values[1:] - late.values[:-1]
    i = int(rises.argmax())
    epoch = int(late.epochs[i + 1])
    v.record("largest rise of max_h A[h,2] after 2·t3", float(rises[i]), epoch=epoch)
    before = ssw.window(end=epoch)
    after = ssw.window(start=epoch)
    if len(before) >= 3 and len(after) >= 3:
        slope_before = _slope(before.window(start=int(before.epochs[-3])))
        slope_after = _slope(after.window(end=int(after.epochs[2])))
        v.record("slope of Σθ² before that epoch (per 1k epochs)", slope_before, epoch=epoch)
        v.record("slope of Σθ² after that epoch (per 1k epochs)", slope_after, epoch=epoch)
    v.phase_lines({"late rise": epoch})
    return v


def _slope(s: Series) -> float:
    e, y = s.epochs.double(), s.values
    e = e - e.mean()
    return float((e * (y - y.mean())).sum() / (e * e).sum()) * 1000

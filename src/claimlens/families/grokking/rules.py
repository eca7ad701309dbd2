"""The grokking family's rules (catalogue §3.1, Revision 2): the trajectory rules of Nanda et al. 2023, pure functions
of per-epoch series, and the rules about the algorithm the final model implements and the trajectory of its parts
(key frequencies, the embedding, neurons, logits, ablations, attention, commutativity), pure functions of the
measured numbers of :mod:`claimlens.families.grokking.metrics`; no model, no pytest.

Each rule takes the series it reads (``s["test_loss"]`` … as :class:`claimlens.core.series.Series`, from a run's
analysis or from the source's digitised curves alike), the phase boundaries (:class:`claimlens.core.series.Phases`)
and the claim's thresholds, and returns a :class:`~claimlens.core.verdicts.Verdict`. Thresholds carry the source's
own value of each quantity, read off the digitised curves (``claimlens/reference/nanda2022/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from claimlens.core.artifacts import NANDA2022_CURVES, printed, wd01
from claimlens.core.series import MIN_TRAJECTORY_CHECKPOINTS, Phases, Series, lead_margin
from claimlens.core.sources import ARENA, CAT, NCLSS, REV2
from claimlens.core.verdicts import Artifact, ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T
from claimlens.families.grokking.metrics import (
    CosSumSummary,
    FourierAblations,
    HeadFit,
    NeuronClusters,
    singular_values_for,
)

FAMILY = "grokking"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map


Measures = Mapping[str, Series]


def _need(v: Verdict, phases: Phases, *names: str) -> bool:
    """A failed check when the run never reached the phase boundaries the claim is about; a part not judged when
    its checkpoints are too few to locate any phase."""
    if phases.unresolved:
        v.not_judged(f"phase boundaries {', '.join(names)} reached", phases.unresolved)
        return False
    missing = [n for n in names if getattr(phases, n) is None]
    if not missing and not _resolved(v, phases, *names):
        return False
    return v.require(not missing, f"phase boundaries {', '.join(names)} reached",
                     f"phase boundaries {missing} were not reached in this run ({phases.as_dict()}); the claim is "
                     f"about phases the run does not have")


def _resolved(v: Verdict, phases: Phases, *names: str) -> bool:
    """Whether the checkpoints resolve the phases between ``names``: two boundaries first seen at the same
    checkpoint leave the phase between them without a checkpoint (rates over it divide by zero, its order is
    unknown), so every part of the rule that reads it is *not judged*, saying which spacing it needed."""
    same = phases.coinciding(*names)
    if same is None:
        return True
    a, b, epoch = same
    prev = phases.before(epoch)
    v.not_judged(f"phases between {a} and {b} resolved",
                 f"resolution: {a} and {b} fall on the same checkpoint (epoch {epoch}); the phase between them has "
                 f"no checkpoint of its own. Judging it needs checkpoints between epoch "
                 f"{prev if prev is not None else 0} and {epoch}")
    return False


def _lead_resolution(series: Series, first: int, second: int, fraction: float) -> dict:
    """The resolution of a lead ``second − first`` between two events first seen at checkpoints: the first event
    happened in ``(before(first), first]``, so the most favourable lead is ``second − before(first)`` (the whole
    lead when it was seen at the first checkpoint), judged against the lead the claim asks for without the part
    the threshold adds for the spacing (``fraction`` of ``second``). For :meth:`Verdict.check`."""
    prev = series.before(first)
    return {"best": second - (prev if prev is not None else 0), "best_threshold": math.ceil(fraction * second),
            "resolution": f"the earlier event lies between epochs {prev if prev is not None else 0} and {first}; "
                          f"judging the lead needs checkpoints between them"}


# ----------------------------------------------------------------------------- delayed generalisation

DELAYED_GENERALISATION = ClaimSpec(
    family=FAMILY,
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
    validation=Validation("validated", "the source's mainline run's curves", (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@DELAYED_GENERALISATION.rule
def delayed_generalisation(train_acc: Series, test_acc: Series, phases: Phases | None, th) -> Verdict:
    """Train accuracy ≥ 0.99 early, test accuracy ≤ 0.5 at t1, ≥ 0.99 at the end, and a delay ratio ≥ 5.

    ``phases`` None: the t1 part is not judged (a run without the transformer's excluded loss)."""
    v = Verdict()
    if len(train_acc) < 10:
        return v.skip(f"the training log has {len(train_acc)} rows; need ≥ 10 epochs")
    v.add_series(train_acc)
    v.add_series(test_acc)
    memorised = train_acc.first_crossing(th["memorised_train_acc"])
    generalised = test_acc.first_crossing(th["generalised_test_acc"])
    # An event first seen at a logged epoch happened after the row before it: the most favourable reading.
    m_prev = train_acc.before(memorised) if memorised is not None else None
    m_best = None if memorised is None else (m_prev + 1 if m_prev is not None else memorised)
    v.check(f"first epoch with train accuracy ≥ {th['memorised_train_acc']:g}", memorised, "<=",
            th["memorised_by_epoch"],
            missing=f"train accuracy never reached {th['memorised_train_acc']:g} "
                    f"(max {float(train_acc.values.max()):.3f})",
            best=m_best, resolution=f"memorisation lies between epochs {m_prev} and {memorised}; judging it needs "
                                    f"rows between them")
    v.check("test accuracy at the last epoch", float(test_acc.values[-1]), ">=",
            th["final_test_acc"], epoch=int(test_acc.epochs[-1]))
    ratio = None if memorised is None or generalised is None else generalised / max(memorised, 1)
    v.check("generalisation delay: first epoch of generalisation over first epoch of memorisation", ratio, ">=",
            th["delay_ratio"], detail=f"test acc ≥ {th['generalised_test_acc']:g} at {generalised}, train acc ≥ "
                                      f"{th['memorised_train_acc']:g} at {memorised}",
            missing=f"test accuracy never reached {th['generalised_test_acc']:g} "
                    f"(max {float(test_acc.values.max()):.3f})" if generalised is None else "no memorisation epoch",
            best=None if ratio is None else generalised / max(m_best, 1),
            resolution=f"memorisation lies between epochs {m_prev if m_prev is not None else 0} and {memorised} "
                       f"(the delay ratio divides by it); judging it needs rows between them")
    if phases is None:
        v.not_judged("test accuracy at the end of memorisation (t1)", "t1 needs the transformer's excluded loss")
    elif _need(v, phases, "t1"):
        v.phase_lines(phases.as_dict())
        prev = phases.before(phases.t1)
        v.check("test accuracy at the end of memorisation (t1)", test_acc.at(phases.t1), "<=",
                th["max_test_acc_at_t1"], epoch=phases.t1,
                best=None if prev is None else min(test_acc.at(prev), test_acc.at(phases.t1)),
                resolution=f"t1 lies between the checkpoints at epochs {prev} and {phases.t1}; judging it needs "
                           f"checkpoints between them")
    return v


# ----------------------------------------------------------------------------- phases

PHASE_BOUNDARIES = ClaimSpec(
    family=FAMILY,
    id="phase_boundaries_mainline",
    statement="Training splits into memorisation, circuit formation and cleanup: t1 < t2 < t3 (shape mode).",
    source=f"{NCLSS}, §5.2, Fig. 7",
    validation=Validation(
        "validated",
        "the mainline run's boundaries: t1 ≈ 1 300, t2 ≈ 9 610, t3 ≈ 14 220 on the digitised curves against the "
        "paper's 1.4k / 9.4k / 14k",
        (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@PHASE_BOUNDARIES.rule
def phase_boundaries(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
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
    validation=Validation(
        "validated",
        "(a)–(c) on the mainline curves; (d), the random-direction control, needs weights and is unvalidated",
        (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@EXCLUDED_LOSS_RISES.rule
def excluded_loss_rises(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
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
    validation=Validation(
        "validated",
        "the mainline curves: restricted loss 10× down at 8 000, test loss at 9 700",
        (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@RESTRICTED_LOSS_LEADS.rule
def restricted_loss_leads(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
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
            detail=f"restricted at {t_r}, test at {t_t}",
            **_lead_resolution(restricted, t_r, t_t, th["lead_fraction"]))
    v.record("lead over the test-loss epoch", (t_t - t_r) / t_t, source=0.175)
    return v


# ----------------------------------------------------------------------------- trig loss identity

TRIG_LOSS_IDENTITY = ClaimSpec(
    family=FAMILY,
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
    validation=Validation(
        "not_applicable",
        "an identity (catalogue Revision 2): holds for every model; the raw gap on the digitised curves is recorded",
        (
            Artifact(
                "the raw gap |log10(trig loss train / all)| on the digitised curves after epoch 1 400 "
                "(reference/nanda2022)",
                value=0.041,
                threshold_name="raw_gap_reference",
                op="<=",
                shipped=True),)),
)


@TRIG_LOSS_IDENTITY.rule
def trig_loss_identity(all_pairs: float, train: float, train_balanced: float | None, epoch: int, n_keys: int, th
                       ) -> Verdict:
    """At one checkpoint: ``train_balanced`` (each class's train pairs weighted equally; None where a class has no
    train pair) equals ``all_pairs`` within ``max_relative_difference``."""
    v = Verdict()
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
    family=FAMILY,
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
    validation=Validation("validated", "the mainline curves", (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@RATIO_PEAKS_AND_RETURNS.rule
def ratio_peaks_and_returns(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
    test, restricted = s["test_loss"], s["trig_loss_all"]
    ratio = _ratio("test_loss / restricted_loss", test, restricted)
    v.add_series(ratio, log=True)
    v.phase_lines(phases.as_dict())
    if not _need(v, phases, "t1", "t3"):
        return v
    epoch, peak = ratio.argmax()
    # The peak lies between t1 and t3: a largest value seen on the edge of that window (or no checkpoint inside
    # it) means the checkpoints did not bracket the peak, and the maximum they show is only a lower bound.
    bracketed = phases.t1 < epoch < phases.t3
    if not bracketed and peak < th["min_peak_ratio"] and phases.t1 <= epoch <= phases.t3:
        v.not_judged("max test/restricted ratio", f"resolution: the largest ratio seen ({peak:.3g}) is at epoch "
                                                  f"{epoch}, on the edge of [t1, t3] = [{phases.t1}, {phases.t3}]: "
                                                  f"the checkpoints do not bracket the peak; judging it needs "
                                                  f"checkpoints around it")
    else:
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
    family=FAMILY,
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
    validation=Validation("unvalidated", "no digitised Gini curve: the paper shows curves only"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@GINI_JUMPS.rule
def gini_jumps(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
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
    validation=Validation("validated", "the mainline curves", (NANDA2022_CURVES,)),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@WEIGHT_NORM_FALLS.rule
def weight_norm_falls(s: Measures, phases: Phases, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
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
    validation=Validation("unvalidated", "no digitised attention curve"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


def attention_gap(attention_to_position: Series, n_heads: int) -> tuple[Series, Series]:
    """mean over heads of ``|A[h,0] − A[h,1]|`` and max over heads of ``A[h,2]``, per epoch."""
    a = attention_to_position
    gap = torch.stack([(a.row(f"head={h},pos=0").values - a.row(f"head={h},pos=1").values).abs()
                       for h in range(n_heads)]).mean(0)
    self_attn = torch.stack([a.row(f"head={h},pos=2").values for h in range(n_heads)]).max(0).values
    return Series("mean_h |A[h,0] − A[h,1]|", a.epochs, gap), Series("max_h A[h,2]", a.epochs, self_attn)


@COMMUTATIVITY_ATTENTION.rule
def commutativity_attention(s: Measures, phases: Phases, n_heads: int, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
    id="late_phase_change_after_cleanup",
    kind="informational",
    statement="Long after cleanup (~43k epochs in the source run) some attention from '=' to itself returns and "
              "the weight norm's slope changes (Σθ² 955 → 942).",
    source=f"{ARENA} 'Development of commutativity' and 'sum of squared weights' (Colab text)",
    thresholds={
        "min_run_over_t3": T(3, f"{REV2}: reported on runs that extend beyond 3·t3", positive=True),
        "search_start_over_t3": T(2, f"{REV2}: the largest rise of max_h A[h,2] after 2·t3", positive=True),
    },
    validation=Validation("not_applicable", "informational: the digitised curves end before it"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@LATE_PHASE_CHANGE.rule
def late_phase_change(s: Measures, phases: Phases, n_heads: int, th) -> Verdict:
    v = Verdict()
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


# ----------------------------------------------------------------------------- the final model's algorithm
# and the trajectory of its parts: key frequencies, the embedding, neurons, logits, ablations, attention.


# ----------------------------------------------------------------------------- embedding

EMBEDDING_SPARSE = ClaimSpec(
    family=FAMILY,
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
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                0.94,
                "min_top_share",
                ">=",
                "≈94% of the non-constant power in the key frequencies: a third-party check of the released model "
                "(catalogue §3.1, weak)"),
            wd01("failed", value=0.863, threshold_name="min_top_share", op=">="))),
)


@EMBEDDING_SPARSE.rule
def embedding_sparse(s: Measures, phases: Phases, keys: list[int], th) -> Verdict:
    """The final embedding's parts are judged on any run; the fall between t1 and t3 and the singular-value
    collapse need the phases (not judged on a run too short to locate them, failed on one that never reaches
    them)."""
    v = Verdict()
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
    family=FAMILY,
    id="key_frequencies_mainline",
    statement="A handful of key frequencies (3–6) carry the algorithm, and the neuron rule and the "
              "neuron-logit-map rule agree on them.",
    source=f"{NCLSS}, §4.1, App. C.2.1; ARENA key frequencies",
    thresholds={
        "min_keys": T(3, f"{CAT}: other seeds use 3 or 4 keys (NCLSS App. C.2.1)", integer=True, source=5),
        "max_keys": T(6, f"{CAT}: the mainline uses 5, the embedding shows 6", integer=True, source=5),
        "min_rule_agreement": T(0.8, f"{CAT} (proposed): rules 1 and 3 agree (Jaccard)"),
    },
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(5, "max_keys", "<=", "five key frequencies {14, 35, 41, 42, 52} (NCLSS §4.1); other seeds 3 or 4"),
            wd01("passed", note="keys 6, 23, 37, 39, 41"))),
)


@KEY_FREQUENCIES.rule
def key_frequencies(rule1: list[int], rule3: list[int], th) -> Verdict:
    v = Verdict()
    v.record("keys (rule 1, neuron clusters, ≥ 5% of live neurons)", rule1)
    v.record("keys (rule 3, W_L norms > max/4)", rule3)
    v.check("number of key frequencies (at least)", len(rule1), ">=", th["min_keys"], detail=f"keys {rule1}")
    v.check("number of key frequencies (at most)", len(rule1), "<=", th["max_keys"], detail=f"keys {rule1}")
    agree = len(set(rule1) & set(rule3)) / max(len(set(rule1) | set(rule3)), 1)
    v.check("agreement of rules 1 and 3 (Jaccard)", agree, ">=", th["min_rule_agreement"],
            detail=f"rule 1 {rule1}, rule 3 {rule3}")
    return v


KEYS_STABLE = ClaimSpec(
    family=FAMILY,
    id="key_frequencies_stable_after_cleanup",
    statement="Once cleanup ends (t3) the key frequencies no longer change: at every checkpoint from t3 on, the "
              "neurons' key frequencies (G-KEY rule 1 with a 5% vote share) agree with the final ones.",
    source=f"{NCLSS}, §5.2 (a stable phase follows cleanup), App. C.2.1",
    thresholds={"min_agreement": T(0.8, f"{REV2}: Jaccard(keys(e), keys(last)) ≥ 0.8 at every checkpoint after t3")},
    validation=Validation("unvalidated", "the paper gives the final keys only: no curve of the keys over training"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@KEYS_STABLE.rule
def keys_stable(neuron_key_frequency: Series, final_keys: list[int], phases: Phases, th) -> Verdict:
    """``neuron_key_frequency``: per checkpoint, 1 where ``k`` is a key of that checkpoint's own neurons."""
    v = Verdict()
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
    family=FAMILY,
    id="neurons_cluster_by_single_frequency",
    statement="Most neurons (≥ 75%) are explained (≥ 85%) by one frequency, and each cluster's W_L columns carry "
              "only its own frequency (≥ 90%).",
    source=f"{NCLSS}, §4.3, Fig. 5",
    thresholds={
        "neuron_fve": T(0.85, f"{CAT}: NCLSS §4.3's 85% variance explained by one frequency"),
        "min_assigned_share": T(0.75, f"{CAT} (proposed): the paper assigns 84.6%", source=0.846),
        "min_own_frequency_share": T(0.9, f"{CAT} (proposed): each cluster's W_L carries its own frequency"),
    },
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                0.846,
                "min_assigned_share",
                ">=",
                "433 of 512 neurons above 85% variance explained by one frequency (NCLSS §4.3)"),
            wd01("failed", value=0.36, threshold_name="min_assigned_share", op=">="))),
)


@NEURONS_CLUSTER.rule
def neurons_cluster(c: NeuronClusters, epoch: int, th) -> Verdict:
    v = Verdict()
    v.check(f"share of neurons explained ≥ {th['neuron_fve']:.0%} by one frequency", c.assigned_share, ">=",
            th["min_assigned_share"], epoch=epoch)
    for k, own in c.own_frequency_share.items():
        v.check("W_L norm in the cluster's own frequency", own, ">=", th["min_own_frequency_share"], epoch=epoch,
                label=f"k={k}")
    return v


NEURON_LOGIT_MAP_RANK = ClaimSpec(
    family=FAMILY,
    id="neuron_logit_map_is_rank_10",
    statement="The neuron-logit map W_L is ≈ Σ_k cos(w_k) u_kᵀ + sin(w_k) v_kᵀ over the key frequencies: outside "
              "the 2 × keys key rows of the Fourier basis lies ≤ 5% of its norm (0.55% in the paper).",
    source=f"{NCLSS}, §4.2, eq. 2–3",
    thresholds={"max_residual": T(0.05, f"{CAT} (proposed, shape mode; exact mode 0.0055)", source=0.0055)},
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                0.0055,
                "max_residual",
                "<=",
                "W_L residual outside the key directions (catalogue §3.1, exact mode)"),
            wd01("failed", value=0.0996, threshold_name="max_residual", op="<="))),
)


@NEURON_LOGIT_MAP_RANK.rule
def neuron_logit_map_rank(residual: float, keys: list[int], epoch: int, th) -> Verdict:
    v = Verdict()
    v.record("rank of the key projection (2 × keys)", 2 * len(keys), source=10)
    v.check("‖W_L − Π W_L‖_F / ‖W_L‖_F outside the key rows", residual, "<=", th["max_residual"], epoch=epoch,
            detail=f"keys {sorted(keys)}")
    return v


# ----------------------------------------------------------------------------- logits

LOGITS_COS_SUM = ClaimSpec(
    family=FAMILY,
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
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                0.95,
                "min_fve",
                ">=",
                "the cos-sum approximation explains 95% of the logits' variance (NCLSS §4.2)"),
            wd01("passed"))),
)


@LOGITS_COS_SUM.rule
def logits_cos_sum(c: CosSumSummary, epoch: int, th) -> Verdict:
    v = Verdict()
    v.check("FVE of Σ_k α_k cos(w_k(a+b−c))", c.fve, ">=", th["min_fve"], epoch=epoch)
    v.check("loss of the fit over the loss of the logits", c.fit_loss_ratio, "<=", th["max_fit_loss_ratio"],
            epoch=epoch, detail=f"{c.fit_loss:.3g} against {c.loss:.3g}")
    v.check("share of the centred logits in the key cos/sin(w(a+b)) directions", c.key_share, ">=",
            th["min_key_share"], epoch=epoch)
    return v


# ----------------------------------------------------------------------------- ablations

FOURIER_ABLATIONS = ClaimSpec(
    family=FAMILY,
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
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                1.11,
                "min_nullspace_over_log_p",
                ">=",
                "ablating the key directions' null space: loss over ln p (catalogue Revision 2)"),
            wd01("passed", value=1.21, threshold_name="min_nullspace_over_log_p", op=">="))),
)


@FOURIER_ABLATIONS.rule
def fourier_ablations(a: FourierAblations, per_key: dict[int, float], p: int, epoch: int, th) -> Verdict:
    v = Verdict()
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
    family=FAMILY,
    id="skip_and_attention_ablation_sizes",
    statement="In the final model the MLP's skip connection hardly matters (zero-ablating it raises the loss ≤ 10x) "
              "while the attention heads are essential (zero-ablating them leaves a loss ≥ ln p).",
    source=f"{NCLSS}, App. A.1",
    thresholds={
        "max_mlp_skip_over_original": T(10, f"{CAT} (proposed)", source=9.12e-7 / 2.4e-7),
        "min_attention_over_log_p": T(1, f"{CAT} (proposed): worse than uniform", source=24.3 / math.log(113)),
    },
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(
                5.140259469259897,
                "min_attention_over_log_p",
                ">=",
                "ablating attention: loss over ln p (catalogue §3.1)"),
            wd01("passed"))),
)


@SKIP_AND_ATTENTION_ABLATIONS.rule
def skip_and_attention_ablations(loss: float, mlp_skip: float, attention: float, p: int, epoch: int, th
                                 ) -> Verdict:
    v = Verdict()
    v.record("loss of the final model (all pairs)", loss, epoch=epoch, source=2.4e-7)
    v.check("loss with the MLP skip connection zero-ablated over the original", mlp_skip / max(loss, 1e-300), "<=",
            th["max_mlp_skip_over_original"], epoch=epoch, detail=f"{mlp_skip:.3g} against {loss:.3g}")
    v.check("loss with the attention heads zero-ablated over ln p", attention / math.log(p), ">=",
            th["min_attention_over_log_p"], epoch=epoch, detail=f"{attention:.3g} against {math.log(p):.3g}")
    return v


ATTENTION_HEADS_FIT = ClaimSpec(
    family=FAMILY,
    id="attention_heads_single_frequency_fit",
    statement="Each head's attention from '=' to a is ≈ c + α(cos w_k a − cos w_k b) + β(sin w_k a − sin w_k b) for "
              "one frequency k (FVE ≥ 0.95 per head).",
    source=f"{NCLSS}, App. C.1.2–C.1.3, Table 2",
    thresholds={"min_fve": T(0.95, f"{CAT} (proposed): the paper's heads explain 97.9–99.1%", source=0.979)},
    validation=Validation(
        "validated",
        "the paper's mainline numbers only (weight decay 1, 40 000 epochs): they describe that run, not every "
        "grokked model",
        (
            printed(0.979, "min_fve", ">=", "the worst head's single-frequency fit, 97.9–99.1% (NCLSS App.)"),
            wd01("failed", value=0.39, threshold_name="min_fve", op=">=", note="its heads 0.39 / 0.67 / 0.55 / 0.58"))),
)


@ATTENTION_HEADS_FIT.rule
def attention_heads_fit(fits: list[HeadFit], epoch: int, th) -> Verdict:
    v = Verdict()
    for h, fit in enumerate(fits):
        v.check("FVE of the best single-frequency fit", fit.fve, ">=", th["min_fve"], epoch=epoch, label=f"head={h}",
                detail=f"k = {fit.frequency}")
    return v


# ----------------------------------------------------------------------------- commutativity of the final model

SYMMETRIC_WEIGHTS = ClaimSpec(
    family=FAMILY,
    id="commutativity_symmetric_weights_and_neurons",
    statement="In the final model the position embeddings of a and b are nearly equal and neuron activations "
              "satisfy N(a, b) ≈ N(b, a).",
    source="ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1",
    thresholds={
        "min_position_cosine": T(0.9, f"{CAT} (proposed)"),
        "max_neuron_asymmetry": T(0.05, f"{CAT} (proposed): G-CMP(N, Nᵀ)"),
    },
    validation=Validation(
        "unvalidated",
        "the paper states the symmetry without numbers; the author's weight-decay-0.1 model fails the position part",
        (wd01("failed", value=-0.71, threshold_name="min_position_cosine", op=">="),)),
)


@SYMMETRIC_WEIGHTS.rule
def symmetric_weights(position_cosine: float, neuron_asymmetry: float, epoch: int, th) -> Verdict:
    v = Verdict()
    v.check("cosine of the position embeddings of a and b", position_cosine, ">=", th["min_position_cosine"],
            epoch=epoch)
    v.check("G-CMP of neuron activations N(a,b) vs N(b,a)", neuron_asymmetry, "<=", th["max_neuron_asymmetry"],
            epoch=epoch)
    return v


SWAP_INVARIANT = ClaimSpec(
    family=FAMILY,
    id="commutativity_output_swap_invariant",
    statement="The grokked model's output is invariant under swapping a and b (checked on inputs drawn by "
              "hypothesis).",
    source="ARENA 'Analysis during training: development of commutativity'; Nanda et al. 2023, App. A.1",
    thresholds={"max_logit_asymmetry": T(0.05, f"{CAT} (proposed): G-CMP of the logits of (a, b) and (b, a)")},
    validation=Validation("unvalidated", "the paper states the symmetry without numbers", (wd01("passed"),)),
)


# ----------------------------------------------------------------------------- trig fractions

TRIG_FRACTION = ClaimSpec(
    family=FAMILY,
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
    validation=Validation("unvalidated", "no digitised trig-fraction curve"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@TRIG_FRACTION.rule
def trig_fraction(s: Measures, phases: Phases, assigned: torch.Tensor, th) -> Verdict:
    """``assigned [M]`` bool: the neurons of the final model explained ≥ ``neuron_fve`` by one frequency."""
    v = Verdict()
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
        first, second = reached["logits"], reached["mlp_post"]
        margin = lead_margin(t.epochs, first, second, fraction=th["lead_fraction"],
                             min_checkpoints=th["min_lead_checkpoints"])
        v.check(f"lead of the logits over the neurons (epochs, at {th['reach_fraction']:.0%} of their final value)",
                second - first, ">=", margin, **_lead_resolution(t, first, second, th["lead_fraction"]))
    if not _need(v, phases, "t2"):
        return v
    if not v.require(bool(assigned.any()), "some neuron is explained by one frequency",
                     f"no neuron of the final model is explained ≥ {th['neuron_fve']:.0%} by one frequency: no "
                     f"quadratic terms to follow"):
        return v
    quad = s["quadratic_fraction"]  # per neuron, for its frequency in the final model
    epochs = quad.epochs.tolist()
    at_t2 = float(quad.data[assigned, epochs.index(phases.t2)].median())
    at_end = float(quad.data[assigned, -1].median())
    prev = phases.before(phases.t2)  # t2 lies in (prev, t2]: the checkpoint before it is as much "at t2"
    at_prev = float(quad.data[assigned, epochs.index(prev)].median()) if prev in epochs else None
    v.record("median G-QUAD(post) at t2", at_t2, epoch=phases.t2)
    v.record("median G-QUAD(post) at the end", at_end, epoch=int(quad.epochs[-1]))
    v.check("median quadratic-term fraction of the assigned neurons at t2 over its final value",
            at_t2 / max(at_end, 1e-300), "<=", th["max_quadratic_at_t2_over_final"], epoch=phases.t2,
            detail=f"{at_t2:.3g} against {at_end:.3g}",
            best=None if at_prev is None else min(at_prev, at_t2) / max(at_end, 1e-300),
            resolution=f"t2 lies between the checkpoints at epochs {prev} and {phases.t2}, where the ratio differs; "
                       f"judging it needs checkpoints between them")
    return v

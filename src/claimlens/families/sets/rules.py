"""Claims about sets of runs (a sweep), judged once per set.

``weight_decay_and_data_fraction_needed`` (NCLSS App. C.2.2, D.1, Fig. 20; catalogue §3.1 and its Revision 2 note):
the published training-fraction sweep has losses only, so the fraction half is stated on losses: the delay ratio
``R(frac) = epoch(test loss first < 0.1) / epoch(train loss first < 0.01)`` falls with the training fraction. The
weight-decay half is judged only as "λ = 0 does not grok within the budget while λ > 0 does"; the order of the
grokking epochs over λ is recorded, not judged (the source's sentence and its numbers disagree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from claimlens.core.artifacts import NANDA2022_FRACTIONS
from claimlens.core.series import Series, spearman
from claimlens.core.sources import CAT, NCLSS
from claimlens.core.verdicts import ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T

FAMILY = "sets"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map

REV2 = "catalogue §3.1 Revision 2 note"
# The source's delay ratios, frac 0.25 … 0.95 (catalogue Revision 2; reference/nanda2022/README.md)
SOURCE_R = {0.25: 82, 0.28: 55, 0.3: 29, 0.4: 11.6, 0.5: 3.5, 0.6: 2.2, 0.7: 1.4, 0.8: 0.78, 0.9: 0.75, 0.95: 0.64}

WEIGHT_DECAY_AND_DATA = ClaimSpec(
    family=FAMILY,
    id="weight_decay_and_data_fraction_needed",
    statement="Grokking needs enough data and weight decay: the delay between memorising and generalising falls "
              "with the training fraction (long at 30%, within 3× at ≥ 60%), and without weight decay the model "
              "does not generalise within the budget while with it it does.",
    source=f"{NCLSS}, App. C.2.2, D.1, Fig. 20",
    thresholds={
        "train_loss_level": T(0.01, f"{REV2}: R's denominator is the epoch the train loss first falls below 0.01",
                              positive=True),
        "test_loss_level": T(0.1, f"{REV2}: R's numerator is the epoch the test loss first falls below 0.1",
                             positive=True),
        "max_spearman": T(-0.8, f"{REV2}: Spearman(frac, R) ≤ −0.8 over the sweep", source=-1.0),
        "small_frac": T(0.3, f"{REV2}: the fraction at which the delay must be long", positive=True),
        "min_ratio_small_frac": T(10, f"{REV2}: R ≥ 10 at frac 0.3", source=29),
        "large_frac": T(0.6, f"{REV2}: from this fraction on generalisation is immediate ({CAT}: 'with ≥ 60% "
                             f"training data generalisation is immediate')", positive=True),
        "max_ratio_large_frac": T(3, f"{REV2}: R ≤ 3 at every frac ≥ 0.6", source=2.2),
        "min_fractions": T(3, "ours: a rank correlation needs ≥ 3 fractions", integer=True, positive=True),
    },
    validation=Validation(
        "validated",
        "the training-fraction half; the weight-decay half has no source curves",
        (NANDA2022_FRACTIONS,)),
)


@dataclass(frozen=True)
class Delay:
    """When one run memorised (train loss first below the level) and generalised (test loss first below its
    level), and their ratio ``R`` (``inf`` when it never generalised, ``nan`` when it never memorised)."""

    memorised: int | None
    generalised: int | None

    @property
    def ratio(self) -> float:
        if self.memorised is None:
            return math.nan
        if self.generalised is None:
            return math.inf
        return self.generalised / max(self.memorised, 1)


def delay(train_loss: Series, test_loss: Series, train_level: float, test_level: float) -> Delay:
    """When the train loss first falls below ``train_level`` and the test loss below ``test_level``."""
    return Delay(train_loss.first_crossing(train_level, "below"), test_loss.first_crossing(test_level, "below"))


def _describe(d: Delay, train_level: float, test_level: float) -> str:
    memo = f"train loss < {train_level:g} at epoch {d.memorised}" if d.memorised is not None \
        else f"train loss never < {train_level:g}"
    gen = f"test loss < {test_level:g} at epoch {d.generalised}" if d.generalised is not None \
        else f"test loss never < {test_level:g} in the run"
    return f"{memo}; {gen}"


@WEIGHT_DECAY_AND_DATA.rule
def data_fraction_needed(members: Sequence[tuple[float, Series, Series]], th) -> Verdict:
    """The fraction half on ``(frac, train_loss, test_loss)`` of each run of a training-fraction sweep."""
    v = Verdict()
    if len(members) < int(th["min_fractions"]):
        return v.skip(f"the set has {len(members)} training fraction(s); the rule needs ≥ {int(th['min_fractions'])}")
    fracs, ratios = [], []
    levels = th["train_loss_level"], th["test_loss_level"]
    for frac, train_loss, test_loss in sorted(members, key=lambda m: m[0]):
        d = delay(train_loss, test_loss, *levels)
        src = SOURCE_R.get(round(frac, 4))
        v.record("delay ratio R = epoch(test loss < 0.1) / epoch(train loss < 0.01)", d.ratio, label=f"frac={frac:g}",
                 detail=_describe(d, *levels), source=src)
        if math.isnan(d.ratio):
            v.note(f"frac {frac:g}: the train loss never fell below {th['train_loss_level']:g}; left out of the rule")
            continue
        fracs.append(frac)
        ratios.append(d.ratio)
    v.add_points("delay ratio R", "task.frac_train", fracs, [r if math.isfinite(r) else None for r in ratios],
                 log=True)
    if len(fracs) < int(th["min_fractions"]):
        v.not_judged("Spearman(frac, R)", f"only {len(fracs)} fraction(s) memorised")
    else:
        v.check("Spearman(frac, R)", spearman(fracs, ratios), "<=", th["max_spearman"],
                detail=f"{len(fracs)} fractions {fracs}")
    small = [r for f, r in zip(fracs, ratios) if abs(f - th["small_frac"]) < 1e-9]
    if small:
        v.check(f"R at frac {th['small_frac']:g}", small[0], ">=", th["min_ratio_small_frac"])
    else:
        v.not_judged(f"R at frac {th['small_frac']:g}", f"the set has no run at frac {th['small_frac']:g}")
    large = [(f, r) for f, r in zip(fracs, ratios) if f >= th["large_frac"] - 1e-9]
    if not large:
        v.not_judged(f"R at frac ≥ {th['large_frac']:g}", f"the set has no run at frac ≥ {th['large_frac']:g}")
    for f, r in large:
        v.check(f"R at frac ≥ {th['large_frac']:g}", r, "<=", th["max_ratio_large_frac"], label=f"frac={f:g}",
                source=SOURCE_R.get(round(f, 4)))
    return v


@WEIGHT_DECAY_AND_DATA.rule
def weight_decay_needed(members: Sequence[tuple[float, Series, Series]], th) -> Verdict:
    """The weight-decay half on ``(weight_decay, train_loss, test_loss)`` of each run of a weight-decay sweep:
    the runs without weight decay do not generalise (test loss never below the level) within the run, the runs
    with it do. The grokking epochs over λ are recorded."""
    v = Verdict()
    zero = [m for m in members if m[0] == 0]
    positive = [m for m in members if m[0] > 0]
    if not zero or not positive:
        return v.skip("the set needs runs with weight decay 0 and with weight decay > 0")
    epochs = []
    levels = th["train_loss_level"], th["test_loss_level"]
    for wd, train_loss, test_loss in sorted(members, key=lambda m: m[0]):
        d = delay(train_loss, test_loss, *levels)
        budget = int(test_loss.epochs[-1])
        v.record("epoch the test loss first falls below 0.1", d.generalised, label=f"weight_decay={wd:g}",
                 detail=_describe(d, *levels) + f"; budget {budget} epochs")
        if wd == 0:
            v.require(d.generalised is None, f"no generalisation without weight decay within {budget} epochs",
                      f"the run with weight decay 0 generalised at epoch {d.generalised}", detail=f"wd={wd:g}")
        else:
            v.require(d.generalised is not None, "generalisation with weight decay within the budget",
                      f"the run with weight decay {wd:g} did not generalise within {budget} epochs",
                      detail=f"wd={wd:g}")
            epochs.append((wd, d.generalised))
    v.add_points("epoch the test loss first falls below 0.1", "train.weight_decay", [wd for wd, _ in epochs],
                 [e for _, e in epochs], log=False)
    reached = [(wd, e) for wd, e in epochs if e is not None]
    if len(reached) >= 2:
        order = [wd for wd, _ in sorted(reached, key=lambda t: t[1])]
        v.note(f"order of grokking over weight decay (earliest first): {order} (recorded, not judged: the "
               f"source's sentence and numbers disagree)")
    return v

"""Induction heads and the phase change of a small attention-only model (claims_catalogue §3.6, Revision 2).

Pure functions of measured series; no model, no pytest. The sudden-phase-change rule is checked against the
source's own digitised loss curve (``reference/nanda2022/induction_head_infinite_log.csv``,
``tests/test_induction.py``); each rule's negative control is the 1-layer model.
"""

from __future__ import annotations

import math

from claimlens.core.artifacts import NANDA2022_CURVES
from claimlens.core.series import SMOOTH_STEPS, DropWindow, Series, drop_window, smooth  # noqa: F401
from claimlens.core.verdicts import ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T

FAMILY = "induction"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map

POST = 'Nanda, "Analysing training dynamics" (200 Concrete Open Problems), the induction-head toy'
IH = 'Olsson et al. (2022), "In-context learning and induction heads", Argument 1'
CAT = "catalogue §3.6"
TASK = "repeated_subsequence"


PHASE_CHANGE_IS_SUDDEN = ClaimSpec(
    family=FAMILY,
    id="induction_phase_change_is_sudden",
    statement="With fresh data the loss of a 2-layer attention-only model stays on a plateau, then drops sharply in "
              "a short window: the phase change.",
    source=f"{POST}; {IH}",
    thresholds={
        "max_window_over_onset": T(1.5, f"{CAT} (proposed): the window is judged against its own onset, so the rule "
                                        f"does not depend on how long the run goes on; on the source's digitised "
                                        f"curve this rule measures 0.82 (the catalogue read ≈ 0.7 off the figure)",
                                   source=0.82),
        "min_onset": T(200, f"{CAT} (proposed): a plateau came first (onset ≥ 200 steps); on the source's digitised "
                            f"curve this rule measures onset 753 (the catalogue: ~600–800)", source=753),
    },
    validation=Validation(
        "validated",
        "the source's digitised induction loss curve (reference/nanda2022/induction_head_infinite_log.csv)",
        (NANDA2022_CURVES,)),
    min_checkpoints=2,
    task=TASK,
)


def phase_change_is_sudden(loss: Series, th) -> Verdict:
    """``loss``: the training loss at every step (fresh data, so it is a held-out loss too)."""
    v = Verdict(PHASE_CHANGE_IS_SUDDEN.id)
    if len(loss) < 4 * SMOOTH_STEPS:
        return v.skip(f"needs the loss at ≥ {4 * SMOOTH_STEPS} consecutive steps; the run logged {len(loss)}")
    window = drop_window(loss)
    if isinstance(window, str):
        v.add_series(smooth(loss), x_name="step")
        v.require(False, "a drop window", window)
        return v
    v.add_series(window.smoothed, x_name="step")
    v.phase_lines({"onset": window.onset, "steepest": window.steepest, "end": window.end})
    v.record("plateau level (nats)", window.plateau)
    v.record("final level (nats)", window.final)
    v.record("steepest fall", window.steepest, epoch=window.steepest)
    v.check("onset of the drop (step)", window.onset, ">=", th["min_onset"], epoch=window.onset)
    if window.end is None:
        v.require(False, "the drop ends", "the smoothed loss never got 90% of the way from its plateau to its final "
                                          "level after its steepest fall")
        return v
    v.check("drop window / onset", window.length / max(window.onset, 1), "<=", th["max_window_over_onset"],
            epoch=window.end, detail=f"window {window.onset}–{window.end}")
    return v


HEADS_FORM_AT_THE_PHASE_CHANGE = ClaimSpec(
    family=FAMILY,
    id="induction_heads_form_at_the_phase_change",
    statement="The phase change is the formation of induction heads: a second-layer head's induction score jumps "
              "from ≈ chance to ≥ 0.5 within the drop window, and a first-layer head is a previous-token head "
              "(score ≥ 0.5) no later than that.",
    source=f"{IH}; {POST}",
    thresholds={
        "induction_min": T(0.5, f"{CAT}: an induction head attends ≥ 0.5 to the token after the previous occurrence"),
        "before_max": T(0.2, f"{CAT}: '≈ chance' before the window — below the bound of 'no induction head' that "
                             f"`induction_needs_two_layers` uses"),
        "previous_min": T(0.5, f"{CAT}: a previous-token head attends ≥ 0.5 to the previous position"),
        "slack_fraction": T(0.1, f"{CAT}: the jump lies in the drop window ± 10% of the run"),
    },
    validation=Validation("unvalidated", "the source shows no attention scores over training"),
    min_checkpoints=10,
    task=TASK,
)


def heads_form_at_the_phase_change(loss: Series, induction: Series, previous: Series, n_layers: int, th) -> Verdict:
    """``induction``: the best induction score among the heads of layers ≥ 1 per checkpoint; ``previous``: the best
    previous-token score among the heads of layer 0."""
    v = Verdict(HEADS_FORM_AT_THE_PHASE_CHANGE.id)
    if n_layers < 2:
        return v.skip(f"a {n_layers}-layer model has no second layer to hold an induction head (its control claim is "
                      f"induction_needs_two_layers)")
    v.add_series(induction, x_name="step")
    v.add_series(previous, x_name="step")
    window = drop_window(loss) if len(loss) >= 4 * SMOOTH_STEPS else "too few steps logged"
    if isinstance(window, str) or window.end is None:
        v.require(False, "a drop window", window if isinstance(window, str) else "the loss never finished its drop")
        return v
    v.phase_lines({"onset": window.onset, "end": window.end})
    span = int(loss.epochs[-1] - loss.epochs[0])
    slack = th["slack_fraction"] * span
    lo, hi = window.onset - slack, window.end + slack
    before = induction.window(None, int(lo)) if lo >= int(induction.epochs[0]) else induction.window(None, int(induction.epochs[0]))
    v.check("best head's induction score at the last checkpoint before the window", float(before.values[-1]), "<=",
            th["before_max"], epoch=int(before.epochs[-1]))
    formed = induction.first_crossing(th["induction_min"], "above")
    v.check("best induction score", float(induction.values.max()), ">=", th["induction_min"],
            epoch=int(induction.epochs[int(induction.values.argmax())]))
    if formed is not None:
        v.require(lo <= formed <= hi, "the induction head forms in the drop window",
                  f"first ≥ {float(th['induction_min']):g} at step {formed}, outside {lo:.0f}–{hi:.0f}",
                  detail=f"step {formed}; window {window.onset}–{window.end} ± {slack:.0f}")
    prev = previous.first_crossing(th["previous_min"], "above")
    v.check("best previous-token score of layer 0", float(previous.values.max()), ">=", th["previous_min"],
            epoch=int(previous.epochs[int(previous.values.argmax())]))
    if prev is not None and formed is not None:
        v.require(prev <= formed, "the previous-token head forms no later",
                  f"previous-token head at step {prev}, induction head at {formed}", detail=f"{prev} ≤ {formed}")
    return v


NEEDS_TWO_LAYERS = ClaimSpec(
    family=FAMILY,
    id="induction_needs_two_layers",
    statement="A 1-layer attention-only model on the same data shows no phase change: its best head's induction "
              "score stays < 0.2 and its loss never drops below the 2-layer model's plateau by more than 10%.",
    source=f"{IH}; {POST}",
    thresholds={
        "induction_max": T(0.2, f"{CAT}"),
        "loss_over_plateau_min": T(0.9, f"{CAT}: 'never drops below the 2-layer model's plateau by more than 10%'"),
    },
    validation=Validation("unvalidated", "the source shows no 1-layer curve"),
    min_checkpoints=2,
    task=TASK,
)


def needs_two_layers(loss_1l: Series, induction_1l: Series, plateau_2l: float, th) -> Verdict:
    """``loss_1l``, ``induction_1l``: the 1-layer model's per-step loss and best induction score per checkpoint;
    ``plateau_2l``: the plateau level of the 2-layer model of the same recipe (:func:`drop_window`)."""
    v = Verdict(NEEDS_TWO_LAYERS.id)
    sm = smooth(loss_1l)
    v.add_series(sm, x_name="step")
    v.add_series(induction_1l, x_name="step")
    v.record("2-layer plateau level (nats)", plateau_2l)
    v.check("best induction score (1 layer)", float(induction_1l.values.max()), "<", th["induction_max"],
            epoch=int(induction_1l.epochs[int(induction_1l.values.argmax())]))
    low = int(sm.values.argmin())
    v.check("lowest smoothed loss / 2-layer plateau", float(sm.values[low]) / plateau_2l, ">=",
            th["loss_over_plateau_min"], epoch=int(sm.epochs[low]))
    return v


FINITE_DATA_GROKS = ClaimSpec(
    family=FAMILY,
    id="induction_finite_data_groks",
    statement="With a finite training set the model first memorises (test loss rises above its initial value while "
              "the train loss falls) and generalises much later (test loss back below ln V only after ≥ 10× the "
              "step at which the train loss first fell below 1).",
    source=f"{POST} (finite data: 512 sequences)",
    thresholds={
        "min_delay_ratio": T(10, f"{CAT}: 'only after ≥ 10× the epoch at which train loss first fell below 1'"),
    },
    validation=Validation(
        "validated",
        "the source's digitised finite-data curves (reference/nanda2022/induction_head_finite_log.csv)",
        (NANDA2022_CURVES,)),
    min_checkpoints=2,
    task=TASK,
)


def finite_data_groks(train_loss: Series, test_loss: Series, d_vocab: int, th) -> Verdict:
    """``train_loss`` per step, ``test_loss`` where it was measured (held-out sequences)."""
    v = Verdict(FINITE_DATA_GROKS.id)
    v.add_series(train_loss, log=True, x_name="step")
    v.add_series(test_loss, log=True, x_name="step")
    uniform = math.log(d_vocab)
    initial = float(test_loss.values[0])
    peak_epoch, peak = test_loss.argmax()
    memorised = train_loss.first_crossing(1.0, "below")
    v.check("peak test loss / initial", peak / initial, ">", 1.0, epoch=peak_epoch)
    if not v.require(memorised is not None, "the train loss falls below 1", "the train loss never fell below 1",
                     detail=f"step {memorised}"):
        return v
    back = test_loss.first_crossing(uniform, "below", after=peak_epoch)
    last = int(test_loss.epochs[-1])
    if back is None:
        if last < th["min_delay_ratio"] * memorised:
            return v.skip(f"the run ends at step {last}, before {float(th['min_delay_ratio']):g} × {memorised} (the "
                          f"step the train loss fell below 1) with the test loss still above ln V: too short to decide")
        v.require(False, "the test loss comes back below ln V", f"still {float(test_loss.values[-1]):.3g} at step {last}")
        return v
    v.check("generalisation step / memorisation step", back / max(memorised, 1), ">=", th["min_delay_ratio"],
            epoch=back, detail=f"train < 1 at {memorised}, test < ln V at {back}")
    return v

"""The "Grokking with weight decay" MLP (catalogue §1.6, §3.5): summed embeddings grok, concatenated ones never do,
the weight norm falls between memorisation and grokking, and long training spikes. Pure functions of a run's
training log and its weight norms; no model, no pytest.

Each claim is stated for one of the two models of the source (``model.combine = "sum"`` or ``"concat"``) and is
judged on runs of that model; a run of the other model is skipped with the reason, and each rule judged on the
other model's built-in run is its negative control (``tests/test_mlp.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from claimlens.core.series import Series
from claimlens.core.verdicts import Artifact, ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T

FAMILY = "mlp"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map

PEL = "'Grokking with weight decay' (a blog post and its notebook, catalogue §1.6)"
CAT = "catalogue §3.5"

# The source notebook's printed losses (catalogue §3.5), every 1000 epochs from 999: the only numbers it gives.
SOURCE_TEST_LOSS = {999: 10.51, 4999: 10.18, 7999: 7.34, 9999: 4.61, 14999: 1.63, 15999: 0.534, 16999: 0.0578,
                    17999: 0.00731, 18999: 6.3e-5, 29999: 2.1e-6}
SOURCE_TRAIN_LOSS = {999: 0.0503, 29999: 3e-7}

Log = Mapping[str, Series]


def _model_is(v: Verdict, combine: str, wanted: str, other_claim: str) -> bool:
    if combine == wanted:
        return True
    words = {"sum": "summed", "concat": "concatenated"}
    v.skip(f"the claim is about the MLP with {words[wanted]} embeddings; this run's are {words.get(combine, combine)} "
           f"({other_claim} judges it; the rule judged on it is the claim's negative control, tests/test_mlp.py)")
    return False


# ----------------------------------------------------------------------------- summed embeddings grok

SUMMED_EMBEDDINGS_GROK = ClaimSpec(
    family=FAMILY,
    id="mlp_summed_embeddings_grok",
    statement="The MLP on summed embeddings E[a] + E[b] memorises quickly and groks only after some tens of "
              "thousands of epochs (test loss first below 0.1 at ~17 000 epochs).",
    source=f"{PEL}: the notebook's printed losses",
    thresholds={
        "memorised_train_acc": T(0.99, f"{CAT}: train accuracy counted as memorised"),
        "generalised_test_acc": T(0.99, f"{CAT}: test accuracy counted as generalised, by the end of the run"),
        "min_delay_epochs": T(5000, f"{CAT} (proposed, shape mode): generalised ≥ 5 000 epochs after memorised",
                              source=16000, integer=True, positive=True),
        "loss_marker": T(0.1, f"{CAT} exact mode: the first epoch with test loss < 0.1 (source 16 999, recorded); "
                              f"on curves without accuracies also the memorisation and generalisation marker",
                         positive=True),
    },
    validation=Validation(
        "validated",
        "the source notebook's printed losses",
        (
            Artifact(
                "the notebook's printed losses: train loss 0.0503 at epoch 999, test loss first < 0.1 at 16 999",
                value=16000,
                threshold_name="min_delay_epochs",
                op=">=",
                shipped=True,
                note="a delay of 16 000 epochs; the printed losses ship in the rules (SOURCE_TEST_LOSS) and "
                     "tests/test_mlp.py judges the rule on them"),)),
    model="mlp",
)


@SUMMED_EMBEDDINGS_GROK.rule
def summed_embeddings_grok(log: Log, combine: str, th) -> Verdict:
    """``log``: the training log's ``train_acc``/``test_acc`` (or, for curves without accuracies, ``train_loss``/
    ``test_loss``) over epochs. Generalised by the end of the run, ≥ ``min_delay_epochs`` after memorisation
    (shape mode); the first epoch with test loss < 0.1 is recorded next to the source's 16 999 (exact mode)."""
    v = Verdict()
    if not _model_is(v, combine, "sum", "mlp_concatenated_embeddings_never_grok"):
        return v
    for name in ("test_loss", "test_acc", "train_acc"):
        if name in log:
            v.add_series(log[name], log=name.endswith("loss"))
    # Memorisation and generalisation: the first train / test accuracy ≥ the thresholds, or on curves without
    # accuracies (the source printed losses only) the first train / test loss ≤ loss_marker.
    if "train_acc" in log and "test_acc" in log:
        memorised = log["train_acc"].first_crossing(th["memorised_train_acc"])
        generalised = log["test_acc"].first_crossing(th["generalised_test_acc"])
        how = f"train accuracy ≥ {th['memorised_train_acc']:g}, test accuracy ≥ {th['generalised_test_acc']:g}"
    else:
        memorised = log["train_loss"].first_crossing(th["loss_marker"], "below")
        generalised = log["test_loss"].first_crossing(th["loss_marker"], "below")
        how = f"losses only: train loss ≤ {th['loss_marker']:g}, test loss ≤ {th['loss_marker']:g}"
    v.require(memorised is not None, "the model memorised its training set", f"it never did ({how})")
    final = log["test_acc"] if "test_acc" in log else log["test_loss"]
    last = int(final.epochs[-1])
    if "test_acc" in log:
        v.check("test accuracy at the end of the run", float(final.values[-1]), ">=", th["generalised_test_acc"],
                epoch=last)
    else:
        v.check("test loss at the end of the run", float(final.values[-1]), "<=", th["loss_marker"], epoch=last)
    delay = None if memorised is None or generalised is None else generalised - memorised
    v.check("epochs from memorisation to generalisation", delay, ">=", th["min_delay_epochs"],
            detail=f"{how}: memorised at {memorised}, generalised at {generalised}",
            missing=f"the run never generalised by epoch {last} ({how})" if generalised is None
            else "it never memorised")
    if "test_loss" in log:
        v.record("first epoch with test loss < 0.1 (the catalogue's exact mode; meaningful on the source recipe)",
                 log["test_loss"].first_crossing(th["loss_marker"], "below"), source=16999)
    return v


# ----------------------------------------------------------------------------- concatenated embeddings never grok

CONCATENATED_NEVER_GROK = ClaimSpec(
    family=FAMILY,
    id="mlp_concatenated_embeddings_never_grok",
    statement="With concat(E[a], E[b]) instead of E[a] + E[b] (the first layer reads 400 inputs) the same recipe "
              "never groks.",
    source=f"{PEL}: 'Concatenated embeddings do not grok'",
    thresholds={
        "judged_at_epoch": T(30000, f"{CAT} (proposed): judged at 30 000 epochs (the notebook's default length; the "
                                    f"source does not say how long it trained)", integer=True, positive=True),
        "max_test_acc": T(0.5, f"{CAT} (proposed): test accuracy < 0.5 at 30 000 epochs"),
    },
    validation=Validation("unvalidated", "weak evidence: a single anecdote in the source, with no numbers"),
    model="mlp",
)


@CONCATENATED_NEVER_GROK.rule
def concatenated_never_grok(test_acc: Series, combine: str, th) -> Verdict:
    """Test accuracy at epoch ``judged_at_epoch`` < ``max_test_acc``; a shorter run is skipped."""
    v = Verdict()
    if not _model_is(v, combine, "concat", "mlp_summed_embeddings_grok"):
        return v
    at = int(th["judged_at_epoch"])
    last = int(test_acc.epochs[-1])
    if last < at:
        return v.skip(f"the run ends at epoch {last}; the claim is judged at epoch {at}")
    v.add_series(test_acc)
    v.record("largest test accuracy up to that epoch", float(test_acc.window(end=at).values.max()))
    v.check(f"test accuracy at epoch {at}", test_acc.at(at), "<", th["max_test_acc"], epoch=at)
    return v


# ----------------------------------------------------------------------------- the weight norm falls

WEIGHT_NORM_DECLINES = ClaimSpec(
    family=FAMILY,
    id="mlp_weight_norm_declines_after_memorisation",
    statement="From about epoch 1000 the loss is near zero and all that is left to optimise is the weight size: "
              "the sum of squared weights falls until the model groks.",
    source=f"{PEL}: 'from epoch ~1000 and onward all the model is doing is trying to reduce the weights', and its "
           f"weights plot",
    thresholds={
        "start_epoch": T(1000, f"{CAT}: 'from epoch ~1000'", integer=True, positive=True),
        "generalised_test_acc": T(0.99, f"{CAT}: the grokking epoch is the first with test accuracy ≥ 0.99"),
        "max_ratio_at_grokking": T(0.8, f"{CAT} (proposed): Σθ² at grokking ≤ 0.8 × Σθ² at epoch 1000"),
        "window_epochs": T(1000, f"{CAT} (proposed): 1000-epoch windows", integer=True, positive=True),
        "min_falling_windows": T(0.9, f"{CAT} (proposed): Σθ² non-increasing in ≥ 90% of the windows between epoch "
                                      f"1000 and grokking"),
    },
    validation=Validation("unvalidated", "the source's weights plot is not digitised"),
    model="mlp",
)


@WEIGHT_NORM_DECLINES.rule
def weight_norm_declines(sum_sq: Series, sum_abs: Series, test_acc: Series, combine: str, th) -> Verdict:
    """``sum_sq`` / ``sum_abs``: Σθ² and Σ|θ| at the checkpoints. Σθ²(grokking) / Σθ²(1000) ≤
    ``max_ratio_at_grokking``, and Σθ² at each window's end ≤ at its start in ≥ ``min_falling_windows`` of the
    ``window_epochs`` windows from 1000 to grokking."""
    v = Verdict()
    if not _model_is(v, combine, "sum", "mlp_concatenated_embeddings_never_grok"):
        return v
    v.add_series(sum_sq, log=True)
    v.add_series(sum_abs, log=True)
    start, width = int(th["start_epoch"]), int(th["window_epochs"])
    grokked = test_acc.first_crossing(th["generalised_test_acc"])
    if not v.require(grokked is not None, "the model grokked (the claim is about the time before it did)",
                     f"test accuracy never reached {th['generalised_test_acc']:g} (max "
                     f"{float(test_acc.values.max()):.3f})"):
        return v
    if grokked < start + width:
        return v.skip(f"the model grokked at epoch {grokked}, before one {width}-epoch window after epoch {start}")
    v.phase_lines({"grokked": grokked})
    v.check("Σθ² at grokking over Σθ² at epoch 1000", sum_sq.at(grokked) / sum_sq.at(start), "<=",
            th["max_ratio_at_grokking"], epoch=grokked, detail=f"{sum_sq.at(grokked):.4g} against "
                                                                f"{sum_sq.at(start):.4g}")
    edges = list(range(start, grokked - width + 1, width))
    falling = [sum_sq.at(e + width) <= sum_sq.at(e) for e in edges]
    v.check(f"share of {width}-epoch windows from {start} to grokking in which Σθ² does not rise",
            sum(falling) / len(falling), ">=", th["min_falling_windows"],
            detail=f"{sum(falling)} of {len(falling)}; rising in "
                   + (", ".join(f"{e}–{e + width}" for e, f in zip(edges, falling) if not f) or "none"))
    return v


# ----------------------------------------------------------------------------- long-training spikes

LONG_TRAINING_SPIKES = ClaimSpec(
    family=FAMILY,
    id="mlp_long_training_spikes",
    kind="informational",
    statement="Trained far beyond grokking (to 1M epochs), the MLP shows recurring loss and accuracy spikes (the "
              "source cannot explain them).",
    source=f"{PEL}: 'Why does it spike', branch long-training",
    thresholds={
        "spike_factor": T(10, f"{CAT}: a spike is the test loss jumping ≥ 10× between consecutive checkpoints",
                          positive=True),
    },
    validation=Validation("not_applicable", "informational: the source shows the spikes in a plot, with no numbers"),
    model="mlp",
)


@LONG_TRAINING_SPIKES.rule
def long_training_spikes(test_loss: Series, th) -> Verdict:
    """``test_loss`` at the checkpoints: the number of consecutive pairs whose loss rises ≥ ``spike_factor`` ×, and
    where."""
    v = Verdict()
    if len(test_loss) < 2:
        return v.skip(f"{len(test_loss)} checkpoint(s): a spike needs two")
    v.add_series(test_loss, log=True)
    values = test_loss.values.clamp_min(1e-300)
    jumps = torch.nonzero(values[1:] >= th["spike_factor"] * values[:-1]).flatten()
    epochs = [int(test_loss.epochs[i + 1]) for i in jumps]
    v.record(f"test-loss spikes (≥ {th['spike_factor']:g}× between consecutive checkpoints)", len(epochs),
             detail=("at epochs " + ", ".join(map(str, epochs[:20])) + (" …" if len(epochs) > 20 else ""))
             if epochs else f"over epochs {int(test_loss.epochs[0])}–{int(test_loss.epochs[-1])}")
    v.phase_lines({f"spike {i + 1}": e for i, e in enumerate(epochs[:10])})
    return v

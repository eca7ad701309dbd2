"""The learning-coefficient rules (catalogue §3.2): pure functions of the λ̂ curve and the training log.

Where the catalogue's proposed rule leaves a choice open, the choice made here (README, "Learning coefficient"):
"changes by ≤ 10%" over the last 20% of checkpoints is the range there over the *peak* λ̂ (a tiny late λ̂ is
dominated by sampling noise, so a ratio to itself would measure the noise); "the largest change" and "the
test-loss drop" are both taken on a log scale after the LLC peak. Distances between events are counted in
*sampled checkpoints* (the rule's own unit), read from the curve's epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from claimlens.core.series import MIN_TRAJECTORY_CHECKPOINTS, Series, spearman
from claimlens.core.verdicts import ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T

FAMILY = "llc"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map

TDI = "Timaeus devinterp, examples/grokking.ipynb (LLC over the checkpoints of a grokking MLP)"
TDI_DIAG = "Timaeus devinterp, examples/sgld_calibration.ipynb 'Heuristics' and examples/diagnostics.ipynb"
NV = "Panickssery & Vaintrob, devinterp hackathon 'Investigating the learning coefficient of modular addition'"
CAT = "catalogue §3.2"

SAMPLING_HEALTHY = ClaimSpec(
    family=FAMILY,
    id="llc_sampling_is_healthy",
    statement="At every sampled checkpoint the SGLD chains are healthy: λ̂ > 0, no NaN or exploding loss, the "
              "20-draw running mean stays above the checkpoint's loss (≤ 10% of draws below), the trace has "
              "flattened, the chains agree, and the mean MALA acceptance is in [0.5, 0.99].",
    source=TDI_DIAG,
    thresholds={"max_unhealthy_checkpoints": T(0, f"{CAT}: every sampled checkpoint passes the diagnostics",
                                               integer=True)},
    validation=Validation(
        "unvalidated",
        "no source chains; the diagnostics are checked on chains with known defects (tests/test_llc.py)"),
)


@SAMPLING_HEALTHY.rule
def sampling_healthy(epochs: list[int], problems: list[list[str]], th) -> Verdict:
    v = Verdict()
    bad = [(e, p) for e, p in zip(epochs, problems) if p]
    for _, texts in bad:
        for text in texts:
            v.note(text)
    v.check("unhealthy checkpoints", len(bad), "<=", th["max_unhealthy_checkpoints"],
            detail=f"of {len(epochs)}" + (f"; epochs {[e for e, _ in bad][:8]}" if bad else ""))
    return v


def unhealthy_reason(epochs: list[int], problems: list[list[str]]) -> str | None:
    """The gate: why the other LLC claims cannot be judged (None when every checkpoint is healthy)."""
    bad = [(e, p) for e, p in zip(epochs, problems) if p]
    if not bad:
        return None
    return (f"gated by llc_sampling_is_healthy: LLC sampling is unhealthy at {len(bad)} of {len(epochs)} "
            f"checkpoints (epochs {[e for e, _ in bad][:8]}); first: {bad[0][1][0]}")


RISES_THEN_FALLS = ClaimSpec(
    family=FAMILY,
    id="llc_rises_in_memorisation_then_falls",
    statement="λ̂ first rises during memorisation (peak before test accuracy reaches 0.5), then falls "
              "(final ≤ 0.7 × peak) and flattens (range over the last 20% of checkpoints ≤ 10% of the peak).",
    source=TDI,
    thresholds={
        "generalising_test_acc": T(0.5, f"{CAT} (proposed): the peak precedes test accuracy 0.5"),
        "max_final_over_peak": T(0.7, f"{CAT} (proposed)"),
        "tail_fraction": T(0.2, f"{CAT} (proposed): the last 20% of checkpoints", positive=True),
        "max_tail_range_over_peak": T(0.1, f"{CAT} (proposed): 'flattens', ≤ 10% (README on the reading)"),
    },
    validation=Validation("unvalidated", "no digitised LLC curve of the source"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@RISES_THEN_FALLS.rule
def rises_then_falls(llc: Series, test_acc: Series, th) -> Verdict:
    v = Verdict()
    v.add_series(test_acc)
    half = test_acc.first_crossing(th["generalising_test_acc"])
    peak_epoch, peak = llc.argmax()
    v.record("LLC peak", peak, epoch=peak_epoch)
    if half is None:
        v.require(False, f"test accuracy reaches {th['generalising_test_acc']:g}",
                  f"test accuracy never reached {th['generalising_test_acc']:g} (max "
                  f"{float(test_acc.values.max()):.3f}): the run did not generalise, so there is no "
                  f"memorisation-then-generalisation to read off λ̂")
        return v
    v.record(f"first epoch test acc ≥ {th['generalising_test_acc']:g}", half)
    v.phase_lines({f"test acc {th['generalising_test_acc']:g}": half})
    v.require(peak_epoch > int(llc.epochs[0]), "λ̂ rises (its peak is after the first sampled checkpoint)",
              f"λ̂ never rose: its maximum {peak:.4g} is at the first sampled checkpoint (epoch {peak_epoch})")
    v.check(f"epoch of the λ̂ peak, before test accuracy first reaches {th['generalising_test_acc']:g}", peak_epoch,
            "<", half, detail=f"peak {peak:.4g}")
    final = float(llc.values[-1])
    v.check("λ̂ at the last checkpoint over its peak", final / peak, "<=", th["max_final_over_peak"],
            epoch=int(llc.epochs[-1]))
    k = max(2, math.ceil(th["tail_fraction"] * len(llc)))
    tail = llc.window(start=int(llc.epochs[-k]))
    spread = float(tail.values.max() - tail.values.min()) / peak
    v.check("range of λ̂ over the last checkpoints over the peak", spread, "<=", th["max_tail_range_over_peak"],
            detail=f"last {k}: epochs {int(tail.epochs[0])}…{int(tail.epochs[-1])}")
    return v


TRACKS_TEST_LOSS = ClaimSpec(
    family=FAMILY,
    id="llc_tracks_test_loss",
    statement="λ̂, measured on the training set alone, tracks the test loss: from the LLC peak on, the Spearman "
              "correlation of λ̂ and the test loss over the sampled checkpoints is ≥ 0.7.",
    source=TDI,
    thresholds={
        "min_test_loss_fall": T(10, "ours: nothing to track unless the test loss falls after the LLC peak"),
        "min_spearman": T(0.7, f"{CAT} (proposed)"),
        "min_points": T(4, "ours: a rank correlation needs ≥ 4 sampled checkpoints", integer=True),
    },
    validation=Validation("unvalidated", "no digitised LLC curve of the source"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@TRACKS_TEST_LOSS.rule
def tracks_test_loss(llc: Series, test_loss: Series, th) -> Verdict:
    v = Verdict()
    v.add_series(test_loss, log=True)
    peak_epoch, _ = llc.argmax()
    after = llc.window(start=peak_epoch)
    if not v.check("sampled checkpoints from the LLC peak on", len(after), ">=", th["min_points"],
                   detail=f"peak at epoch {peak_epoch}"):
        return v
    losses = torch.tensor([test_loss.at(int(e)) for e in after.epochs], dtype=torch.float64)
    v.check("fall of the test loss after the LLC peak (its value there over its minimum after it)",
            float(losses[0] / losses.min()), ">=", th["min_test_loss_fall"], epoch=peak_epoch)
    v.check("Spearman correlation of λ̂ and test loss from the LLC peak on", spearman(after.values, losses), ">=",
            th["min_spearman"], detail=f"{len(after)} checkpoints from epoch {peak_epoch}")
    return v


SENSITIVE_TO_TRANSITION = ClaimSpec(
    family=FAMILY,
    id="llc_sensitive_to_grokking_transition",
    statement="After the LLC peak, the largest checkpoint-to-checkpoint change of log λ̂ falls within ±2 sampled "
              "checkpoints of the steepest fall of the (log) test loss; restricting SGLD to the hyperplane "
              "orthogonal to the gradient gives a curve with lower checkpoint-to-checkpoint variance.",
    source=NV,
    thresholds={
        "max_distance_checkpoints": T(2, f"{CAT} (proposed): within ±2 sampled checkpoints", integer=True),
        "max_orth_variance_ratio": T(1, f"{CAT} (proposed): the orthogonal curve is smoother (strictly)"),
        "min_log10_test_loss_drop": T(0.1, "ours: a transition is a fall of the log10 test loss by > 0.1 over a "
                                           "sampled interval"),
    },
    validation=Validation("unvalidated", "no digitised LLC curve of the source"),
    min_checkpoints=MIN_TRAJECTORY_CHECKPOINTS,
)


@SENSITIVE_TO_TRANSITION.rule
def sensitive_to_transition(llc: Series, orth: Series, test_loss: Series, th) -> Verdict:
    v = Verdict()
    v.add_series(test_loss, log=True)
    peak_epoch, _ = llc.argmax()
    after = llc.window(start=peak_epoch)  # sampled checkpoints from the peak on
    if not v.require(len(after) >= 3, "λ̂ peaks early enough for a transition after it",
                     f"λ̂ peaks at epoch {peak_epoch}, too late for a transition after it"):
        return v
    if not v.require(bool((after.values > 0).all()), "λ̂ > 0 after its peak",
                     "λ̂ ≤ 0 after its peak; its log change is undefined"):
        return v
    epochs = [int(e) for e in after.epochs]
    log_loss = torch.tensor([math.log10(max(test_loss.at(e), 1e-30)) for e in epochs])
    log_llc = torch.log10(after.values)
    d_loss = log_loss[1:] - log_loss[:-1]  # change over sampled interval (i, i+1)
    d_llc = (log_llc[1:] - log_llc[:-1]).abs()
    drop, jump = int(d_loss.argmin()), int(d_llc.argmax())
    v.record("steepest test-loss fall (log10 per sampled interval)", float(d_loss.min()), epoch=epochs[drop + 1])
    v.record("largest |Δ log10 λ̂| after the peak", float(d_llc.max()), epoch=epochs[jump + 1])
    v.phase_lines({"test-loss drop": epochs[drop + 1]})
    if not v.check("steepest fall of the log10 test loss after the LLC peak (a transition to react to)",
                   -float(d_loss.min()), ">", th["min_log10_test_loss_drop"], epoch=epochs[drop + 1]):
        return v
    v.check("sampled checkpoints between the largest change of log λ̂ and the test-loss drop", abs(jump - drop), "<=",
            th["max_distance_checkpoints"], detail=f"λ̂ over epochs {epochs[jump]}→{epochs[jump + 1]}, test loss over "
                                                   f"{epochs[drop]}→{epochs[drop + 1]}")
    var_plain = float((llc.values[1:] - llc.values[:-1]).var())
    var_orth = float((orth.values[1:] - orth.values[:-1]).var())
    v.record("variance of checkpoint-to-checkpoint Δλ̂, plain", var_plain)
    v.record("largest relative difference between the two curves",
             float(((orth.values - llc.values).abs() / llc.values.abs().clamp_min(1e-12)).max()))
    v.check("variance of checkpoint-to-checkpoint Δλ̂, orthogonal / plain", var_orth / var_plain, "<",
            th["max_orth_variance_ratio"])
    return v


# ----------------------------------------------------------------------------- λ̂ against p (a run set)

# The hackathon's settings for this claim (catalogue §3.2 "Metric"): SGLD γ = 5, ε = 0.001, 3000 steps of which the
# last 75% are averaged, minibatch 64, restricted to the hyperplane orthogonal to the gradient, no weight decay in
# the sampler, β = n / ln n over the training set (G-LLC, NV).
NV_STEPS, NV_KEPT = 3000, 0.75


def linear_in_p_config(n_train: int):
    """The hackathon's SGLD configuration for a run with ``n_train`` training examples (4 chains, each 3000 steps
    of which the first 25% are burn-in; ``nβ = n / ln n``)."""
    from claimlens.families.llc.metrics import SGLDConfig

    burnin = round(NV_STEPS * (1 - NV_KEPT))
    return SGLDConfig(epsilon=1e-3, gamma=5.0, nbeta=n_train / math.log(n_train), num_chains=4,
                      num_draws=NV_STEPS - burnin, num_burnin=burnin, batch_size=64, seed=0, orth_grad=True)


REV3 = "catalogue Revision 3"

LINEAR_IN_P = ClaimSpec(
    family=FAMILY,
    id="llc_linear_in_p_for_generalising_nets",
    statement="For networks that generalise, λ̂ at the final checkpoint is linear in the modulus p, and the line is "
              "training's: at the same members' initial checkpoints λ̂ rises far less steeply with p.",
    source=f"{NV} (the post's excerpt; networks of ~500–8000 neurons)",
    thresholds={
        "generalised_test_acc": T(0.99, "ours: a member counts as generalising when its final test accuracy is "
                                        "≥ 0.99 (the claim is about networks that generalise)"),
        "min_members": T(3, "ours: a line through fewer than three generalising members says nothing",
                         integer=True, positive=True),
        "min_r2": T(0.9, f"{CAT} (proposed): linear fit of λ̂ against p with R² ≥ 0.9"),
        "min_slope_difference_se": T(3, f"{REV3} (ours, the initialisation negative control): slope_final − "
                                        f"slope_init ≥ 3 standard errors of that difference (from the chains' "
                                        f"spread); R² alone passes on untrained members (0.989 at initialisation)",
                                     positive=True),
        "max_init_slope_fraction": T(0.2, f"{REV3} (ours, the initialisation negative control): slope_init ≤ 0.2 × "
                                          f"slope_final"),
    },
    validation=Validation(
        "unvalidated",
        "the source gives no numbers; its 'within a factor < 2 of the theoretical value for one idealised circuit' "
        "is not judged"),
)


@dataclass(frozen=True)
class PMember:
    """One member of a sweep over p as :func:`linear_in_p` reads it: ``p``; ``final``, λ̂ at its final checkpoint;
    ``test_acc``, its final test accuracy (fraction); ``final_se``, the standard error of ``final`` (the chains'
    standard deviation over √chains); ``init`` and ``init_se``, the same at its first checkpoint (None: not
    estimated)."""

    p: int
    final: float
    test_acc: float
    final_se: float | None = None
    init: float | None = None
    init_se: float | None = None


def _line(x: list[float], y: list[float], se: list[float | None] | None = None
          ) -> tuple[float, float, float, float | None]:
    """Least squares ``y = a·x + b``: ``(a, b, R², standard error of a from the points' own standard errors
    se_i: √Σ wᵢ² seᵢ² with wᵢ = (xᵢ − x̄) / Σ(x − x̄)², or None when any is unknown)``."""
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    xc, yc = xt - xt.mean(), yt - yt.mean()
    sxx = float((xc * xc).sum())
    slope = float((xc * yc).sum()) / sxx
    intercept = float(yt.mean() - slope * xt.mean())
    residual = yt - (slope * xt + intercept)
    total = float((yc * yc).sum())
    r2 = 1 - float((residual * residual).sum()) / total if total > 0 else float("nan")
    slope_se = None
    if se is not None and all(e is not None for e in se):
        w = xc / sxx
        slope_se = float((w * w * torch.tensor(se, dtype=torch.float64) ** 2).sum().sqrt())
    return slope, intercept, r2, slope_se


@LINEAR_IN_P.rule
def linear_in_p(members: list, th, problems: dict[int, list[str]] | None = None) -> Verdict:
    """``members``: a :class:`PMember` per run of a sweep over ``task.p`` (or ``(p, λ̂ final, final test accuracy)``).
    Over the members with test accuracy ≥ ``generalised_test_acc``: the least-squares line λ̂ = a·p + b of the final
    checkpoints and its R² ≥ ``min_r2``; λ̂ against p is charted, the slope and intercept recorded, the excluded
    members named.

    The initialisation negative control (catalogue Revision 3): the same members' first checkpoints must fail the
    rule, i.e. the final slope rises above the initial one by ≥ ``min_slope_difference_se`` standard errors of the
    difference (each slope's from the members' chain standard errors, the two estimates independent), and
    ``slope_init ≤ max_init_slope_fraction × slope_final``. Not judged (the verdict then rests on R²) when a member's
    initial λ̂ or a standard error is missing. ``problems``: the SGLD diagnostics of each member's estimates
    (:func:`claimlens.families.llc.metrics.diagnose`), noted with the verdict (the source's settings are used as they
    are, healthy or not)."""
    v = Verdict()
    for p, texts in sorted((problems or {}).items()):
        for text in texts:
            v.note(f"p = {p}: {text}")
    members = sorted((m if isinstance(m, PMember) else PMember(*m) for m in members), key=lambda m: m.p)
    v.add_points("λ̂ at the final checkpoint", "task.p", [m.p for m in members], [m.final for m in members])
    if any(m.init is not None for m in members):
        v.add_points("λ̂ at the first checkpoint (initialisation)", "task.p", [m.p for m in members],
                     [m.init for m in members])
    kept = [m for m in members if m.test_acc >= th["generalised_test_acc"]]
    left_out = [f"p = {m.p} (test accuracy {m.test_acc:.3f})" for m in members
                if m.test_acc < th["generalised_test_acc"]]
    if left_out:
        v.record("members left out: they did not generalise", len(left_out), detail=", ".join(left_out))
    if len(kept) < int(th["min_members"]):
        return v.skip(f"{len(kept)} member(s) generalised (final test accuracy ≥ {th['generalised_test_acc']:g}); "
                      f"the rule needs ≥ {int(th['min_members'])}")
    x = [float(m.p) for m in kept]
    slope, intercept, r2, slope_se = _line(x, [m.final for m in kept], [m.final_se for m in kept])
    v.record("slope of λ̂ against p", slope, detail=f"standard error {slope_se:.3g}" if slope_se is not None else "")
    v.record("intercept", intercept)
    v.check("R² of the linear fit of λ̂ against p", r2, ">=", th["min_r2"],
            detail=f"{len(kept)} generalising members: " + ", ".join(f"p = {m.p}: {m.final:.3g}" for m in kept))
    _initialisation_control(v, kept, x, slope, slope_se, th["min_slope_difference_se"], th["max_init_slope_fraction"])
    return v


def _initialisation_control(v: Verdict, kept: list[PMember], x: list[float], slope: float, slope_se: float | None,
                            min_se: float, max_fraction: float) -> None:
    """The negative control of :func:`linear_in_p`: ``min_se`` and ``max_fraction`` are its two thresholds."""
    name_diff = "slope_final − slope_init, in standard errors of the difference"
    name_frac = "slope_init / slope_final"
    if any(m.init is None for m in kept):
        for name in (name_diff, name_frac):
            v.not_judged(name, "λ̂ was not estimated at every member's first checkpoint")
        return
    init_slope, _, init_r2, init_se = _line(x, [m.init for m in kept], [m.init_se for m in kept])
    v.record("slope of λ̂ against p at the first checkpoint", init_slope,
             detail=f"standard error {init_se:.3g}" if init_se is not None else "")
    v.record("R² of the linear fit at the first checkpoint (not judged: R² alone passes on untrained members)",
             init_r2, source=0.989)
    if slope_se is None or init_se is None:
        v.not_judged(name_diff, "a member's chain standard error is unknown")
    else:
        se = math.sqrt(slope_se ** 2 + init_se ** 2)
        diff = slope - init_slope
        v.check(name_diff, diff / se if se > 0 else (math.inf if diff > 0 else -math.inf), ">=",
                min_se, detail=f"{slope:.4g} − {init_slope:.4g} = {diff:.4g}, standard error "
                                                      f"{se:.3g}")
    if slope <= 0:
        v.require(False, f"slope_init ≤ {max_fraction:g} × slope_final",
                  f"the final slope {slope:.4g} is not positive")
    else:
        v.check(name_frac, init_slope / slope, "<=", max_fraction,
                detail=f"{init_slope:.4g} / {slope:.4g}")

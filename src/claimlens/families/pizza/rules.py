"""Pizza or clock (catalogue §3.3): which modular-addition algorithm a transformer learned, judged by the
measures of :mod:`claimlens.families.pizza.metrics`. Pure functions of measured numbers; no model, no pytest.

Each claim has two sides, stated by the source for the two ends of the attention-rate axis (Zhong et al. 2023,
§5): a model with attention rate 0 (constant attention) learns the pizza, one with rate 1 (softmax attention)
the clock. A run is judged on the side of its own attention rate (:func:`side_of`); an MLP, which has none, on the side its
gradient symmetricity names (:func:`side_of_gs`; the gradient-symmetricity claim itself then skips it, as that
would be circular). Each side's rule judged on
the other model is the claim's negative control (``tests/test_pizza_clock.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from claimlens.core.artifacts import ZHONG_MODEL_A, ZHONG_MODEL_B, ZHONG_SWEEP
from claimlens.core.verdicts import Artifact, ClaimSpec, Validation, Verdict
from claimlens.core.verdicts import Threshold as T

FAMILY = "pizza"  # the folder's name: carried on every record, used by the HTML and the built-in runs' map

CP = 'Zhong, Liu, Tegmark & Andreas (2023), "The Clock and the Pizza"'
NV = "Panickssery & Vaintrob, devinterp hackathon 'Investigating the learning coefficient of modular addition'"
CAT = "catalogue §3.3"
REV3 = "catalogue Revision 3"
SWEEP = "released 1-layer sweep table (result/1l_fixedwidth.csv), runs with validation accuracy ≥ 0.99, circularity ≥ 0.9"
# Revision 3: the rule passes on the source's own models, shipped as built-in runs

MODEL_A_CIRCULARITY = 0.9978  # eval-main.ipynb's saved output for Model A ("Circularity")

PIZZA_MAX_RATE = 0.05  # the sweep-table bins the catalogue's percentiles come from: rate < 0.05 …
CLOCK_MIN_RATE = 0.95  # … and rate ≥ 0.95


# An MLP has no attention rate: its side is read from its gradient symmetricity, the Clock/Pizza paper's primary
# discriminator, with the bands of the gradient-symmetricity claim (the released sweep: rate < 0.05 has GS ≥ 0.969
# in 90% of runs, rate ≥ 0.95 has GS ≤ 0.687 in 90%).
PIZZA_MIN_GS = 0.95
CLOCK_MAX_GS = 0.7


def side_of_gs(gs: float) -> str | None:
    """``"pizza"`` for gradient symmetricity ≥ 0.95, ``"clock"`` for ≤ 0.7, else None (a model without an attention
    rate: the hackathon's MLP)."""
    if gs >= PIZZA_MIN_GS:
        return "pizza"
    if gs <= CLOCK_MAX_GS:
        return "clock"
    return None


def side_of(attn_rate: float) -> str | None:
    """``"pizza"`` for attention rate < 0.05, ``"clock"`` for ≥ 0.95 (the bins of the catalogue's sweep
    percentiles), else None: the claims state nothing about rates in between."""
    if attn_rate < PIZZA_MAX_RATE:
        return "pizza"
    if attn_rate >= CLOCK_MIN_RATE:
        return "clock"
    return None


GRADIENT_SYMMETRICITY = ClaimSpec(
    family=FAMILY,
    id="pizza_clock_gradient_symmetricity",
    statement="Gradient symmetricity separates the algorithms: ≈ 0.99 for the pizza (attention rate 0), ≈ 0.33 for "
              "the clock (attention rate 1).",
    source=f"{CP}, §4, Def. 4.1; eval-main.ipynb saved output for Model A",
    thresholds={
        "pizza_min": T(0.95, f"{CAT} (proposed): {SWEEP}: rate < 0.05 has GS 10th/50th/90th percentiles "
                             f"0.969 / 0.993 / 0.997", source=0.99367),
        "clock_max": T(0.7, f"{CAT} (proposed): {SWEEP}: rate ≥ 0.95 has GS percentiles 0.240 / 0.462 / 0.687",
                       source=0.3336),
    },
    validation=Validation(
        "validated",
        "the source's own models (catalogue Revision 3)",
        (ZHONG_MODEL_A, ZHONG_MODEL_B)),
    )

# Revision 3: the tables' distance_irrelevance column is train-main.py's variant on the largest incorrect logit, not
# Def. 4.2's. Its 10th / 50th / 90th percentiles in the fixed-width table (1-layer, filtered as the set claim filters:
# accuracy ≥ 0.99, circularity ≥ 0.9, inputs [a, b]) at each side's bin (rate < 0.05 / ≥ 0.95; linear interpolation,
# numpy's default), recorded next to a run's own variant (tests/test_sweep_tables.py recomputes them).
DI_VARIANT_PERCENTILES = {"pizza": (0.169, 0.334, 0.743), "clock": (0.767, 0.864, 0.943)}

DISTANCE_IRRELEVANCE = ClaimSpec(
    family=FAMILY,
    id="pizza_clock_distance_irrelevance",
    statement="Distance irrelevance (on the correct logit) separates the algorithms: ≈ 0.17 for the pizza, ≈ 0.85 "
              "for the clock.",
    source=f"{CP}, Def. 4.2; eval-main.ipynb saved output for Model A",
    thresholds={
        "pizza_max": T(0.4, f"{CAT} (proposed; the paper's band pizza ∈ [0, 0.4]); {REV3}: passes on Models A "
                            f"(0.17174) and B (0.848) and on a released 1-layer clock (0.897). The tables' column is "
                            f"train-main.py's largest-incorrect-logit variant, recorded beside this (not judged)",
                       source=0.17174),
        "clock_min": T(0.6, f"{CAT} (proposed); {REV3}: passes on Models A and B", source=0.85),
    },
    validation=Validation(
        "validated",
        "Def. 4.2's bands, on few models: the source's Models A and B and a released 1-layer clock",
        (
            ZHONG_MODEL_A,
            ZHONG_MODEL_B,
            Artifact(
                "a released 1-layer clock of the source's sweep (does not ship)",
                value=0.897,
                threshold_name="clock_min",
                op=">="))),
    )

DOUBLES_FOURIER_MODE = ClaimSpec(
    family=FAMILY,
    id="pizza_doubles_fourier_mode",
    statement="If the embedding has a large Fourier mode k, the activations before the unembedding (a fixed, "
              "b = 0 … p − 1) show a large mode at 2k mod p for the pizza and only at k for the clock.",
    source=f"{NV}, README and pizza_vs_clock_exp.py (a = 17)",
    thresholds={
        "pizza_min_ratio": T(1.0, f"{CAT} (proposed): pizza m[2k mod p] ≥ m[k] (modes folded m → min(m, p − m))"),
        "clock_max_ratio": T(1.0, f"{CAT} (proposed): clock the reverse, m[2k mod p] < m[k]"),
    },
    validation=Validation(
        "contradicted",
        "the hackathon's heuristic as stated: the source's own pizza gives the clock answer (m[2k]/m[k] = 0.024, k "
        "= 17)",
        (ZHONG_MODEL_A, ZHONG_MODEL_B)),
    )


def _side(v: Verdict, side: str | None, basis: float | str) -> bool:
    """``basis``: the attention rate the side was read from, or (a model without one) a description of how it was
    read (:func:`side_of_gs`)."""
    by_rate = not isinstance(basis, str)
    if side not in ("pizza", "clock"):
        v.skip(f"attention rate {basis:g}: the claim is stated for rate < {PIZZA_MAX_RATE} (pizza) and ≥ "
               f"{CLOCK_MIN_RATE} (clock), not in between" if by_rate else
               f"{basis}: between the pizza (≥ {PIZZA_MIN_GS}) and clock (≤ {CLOCK_MAX_GS}) bands, the claim names "
               f"no side")
        return False
    if by_rate:
        v.record("side judged (from the attention rate)", f"{side} (rate {basis:g})")
    else:
        v.record("side judged", f"{side} ({basis})")
    return True


def _judge_side(v: Verdict, side: str | None, attn_rate: float | str, name: str, value: float, *,
                pizza: tuple[str, float], clock: tuple[str, float], epoch: int, label: str = "") -> Verdict:
    """One check on the side the attention rate (or, for an MLP, the gradient symmetricity) names: ``pizza`` /
    ``clock`` = (op, threshold)."""
    if not _side(v, side, attn_rate):
        return v
    op, bound = pizza if side == "pizza" else clock
    v.check(f"{name} ({side} side)", value, op, bound, epoch=epoch, label=label)
    return v


@GRADIENT_SYMMETRICITY.rule
def gradient_symmetricity(gs: float, side: str | None, attn_rate: float, epoch: int, th) -> Verdict:
    """Pizza: GS ≥ ``pizza_min``; clock: GS ≤ ``clock_max`` (final checkpoint)."""
    return _judge_side(Verdict(), side, attn_rate, "gradient symmetricity", gs,
                       pizza=(">=", th["pizza_min"]), clock=("<=", th["clock_max"]), epoch=epoch)


@DISTANCE_IRRELEVANCE.rule
def distance_irrelevance(di: float, side: str | None, attn_rate: float | str, epoch: int, th, *,
                         di_top_incorrect: float | None = None) -> Verdict:
    """Pizza: DI ≤ ``pizza_max``; clock: DI ≥ ``clock_min`` (final checkpoint, correct logit: Def. 4.2).
    ``attn_rate``: the rate the side was read from, or for an MLP how it was read (:func:`side_of_gs`).
    ``di_top_incorrect``: the same checkpoint's DI of the largest incorrect logit (train-main.py's variant, the
    tables' column), recorded, not judged, next to the fixed-width table's 10th / 50th / 90th percentiles at the
    judged side (:data:`DI_VARIANT_PERCENTILES`; catalogue Revision 3)."""
    v = _judge_side(Verdict(), side, attn_rate, "distance irrelevance of the correct logit",
                    di, pizza=("<=", th["pizza_max"]), clock=(">=", th["clock_min"]), epoch=epoch)
    if di_top_incorrect is not None and side in DI_VARIANT_PERCENTILES:
        record_di_variant(v, di_top_incorrect, side, epoch)
    return v


def record_di_variant(v: Verdict, value: float, side: str, epoch: int | None = None) -> None:
    """Record train-main.py's DI of the largest incorrect logit (not judged) beside the tables' percentiles at
    ``side``: its source value is their median; the detail names the 10th / 50th / 90th percentiles and where the
    value sits among them."""
    lo, mid, hi = DI_VARIANT_PERCENTILES[side]
    where = "below the 10th" if value < lo else "above the 90th" if value > hi else "within the 10th–90th"
    v.record("distance irrelevance of the largest incorrect logit (train-main.py's variant, the tables' column; "
             "not judged)", value, epoch=epoch, source=mid,
             detail=f"{side} side of the fixed-width 1-layer table (rate {'< 0.05' if side == 'pizza' else '≥ 0.95'}, "
                    f"filtered): 10th / 50th / 90th percentiles {lo} / {mid} / {hi}; {where} percentile")


def circularity(value: float | None, epoch: int | None = None) -> Verdict:
    """The embedding's circularity (G-CIRC, eval-main.ipynb; catalogue Revision 3: computed for every transformer
    run so that the tables' filter, circularity ≥ 0.9, applies to any sweep), recorded, not judged, with the source's
    value on Model A beside it. ``value`` None: the embedding has fewer than four directions (nothing recorded)."""
    v = Verdict()
    if value is None:
        return v
    v.record("circularity of the embedding (G-CIRC; the tables' filter keeps ≥ 0.9; not judged)", value, epoch=epoch,
             source=MODEL_A_CIRCULARITY)
    return v


@DOUBLES_FOURIER_MODE.rule
def doubles_fourier_mode(mode: dict, side: str | None, attn_rate: float | str, epoch: int, th) -> Verdict:
    """``mode``: :func:`claimlens.families.pizza.metrics.pizza_mode_test` of the final checkpoint. Pizza: ``m_2k / m_k ≥
    pizza_min_ratio``; clock: ``m_2k / m_k < clock_max_ratio``. ``attn_rate``: as :func:`distance_irrelevance`'s
    (the source stated this test for its MLP, whose side comes from its gradient symmetricity)."""
    v = Verdict()
    if side in ("pizza", "clock"):
        v.record("embedding's top mode k (folded), and 2k mod p (folded)", f"k = {mode['k']}, 2k → {mode['k2']}")
    label = f"k={mode['k']}, 2k→{mode['k2']}; m_k {mode['m_k']:.4g}, m_2k {mode['m_2k']:.4g}"
    return _judge_side(v, side, attn_rate, "pre-unembed mode magnitude at 2k over that at k", mode["ratio"],
                       pizza=(">=", th["pizza_min_ratio"]), clock=("<", th["clock_max_ratio"]), epoch=epoch,
                       label=label)


# eval-main.ipynb (commit b78c0e6), cell "Logit FVE", Model A: (clock, pizza) per circle, and the accompanying
# circles' fits (cell "Accompanying Pizza Logit FVE").
SOURCE_CIRCLE_FVE = ((0.7541, 0.9831), (0.7562, 0.9831), (0.7538, 0.9841))
SOURCE_ACCOMPANYING_FVE = (0.9756, 0.9723, 0.9769)

LOGITS_FIT_PIZZA_FORMULA = ClaimSpec(
    family=FAMILY,
    id="pizza_logits_fit_pizza_formula",
    statement="In a pizza model each embedding circle, isolated by keeping two principal components of the "
              "embedding, gives logits explained 98.3–98.4% by the pizza formula and only ~75.4–75.6% by the clock "
              "formula cos(w(a + b − c)).",
    source=f"{CP}, §4 and Appendix; eval-main.ipynb (commit b78c0e6) saved outputs 'Logit FVE' for Model A",
    thresholds={
        "min_pizza_minus_clock": T(0.15, f"{CAT} (proposed): pizza FVE − clock FVE ≥ 0.15 for each circle",
                                   source=min(pz - ck for ck, pz in SOURCE_CIRCLE_FVE)),
    },
    validation=Validation(
        "validated",
        "the source's own pizza (its clock is the negative control, tests/test_pizza_clock.py)",
        (ZHONG_MODEL_A,)),
    )


@LOGITS_FIT_PIZZA_FORMULA.rule
def logits_fit_pizza_formula(fits: list, attn_rate: float, epoch: int, th) -> Verdict:
    """``fits``: :func:`claimlens.families.pizza.analysis.formula_fits` of the final checkpoint (objects with
    ``components``, ``k``, ``pizza``, ``clock``, ``accompanies``). Stated for pizza models only: for each circle
    (``accompanies`` None) pizza FVE − clock FVE ≥ ``min_pizza_minus_clock``; the FVEs and the accompanying
    circles' fits are recorded next to the source's. A run at another attention rate is skipped."""
    v = Verdict()
    if side_of(attn_rate) != "pizza":
        return v.skip(f"attention rate {attn_rate:g}: the claim is stated for pizza models (rate < "
                      f"{PIZZA_MAX_RATE}); judged on a clock model it is the claim's negative control "
                      f"(tests/test_pizza_clock.py)")
    circles = [f for f in fits if f.accompanies is None]
    for i, f in enumerate(circles):
        label = f"circle {i + 1}: PCs {f.components[0]}, {f.components[1]}; k = {f.k}"
        source = SOURCE_CIRCLE_FVE[i] if i < len(SOURCE_CIRCLE_FVE) else (None, None)
        v.record(f"Logit FVE by the pizza formula, {label}", f.pizza, source=source[1])
        v.record(f"Logit FVE by the clock formula, {label}", f.clock, source=source[0])
        v.check("pizza FVE − clock FVE", f.pizza - f.clock, ">=", th["min_pizza_minus_clock"], epoch=epoch,
                label=label, source=round(source[1] - source[0], 4) if source[0] is not None else None)
    main_k = [f.k for f in circles]
    for f in fits:
        if f.accompanies is not None:
            i = main_k.index(f.accompanies)  # the source's accompanying circle #4 goes with #1, #5 with #2, …
            v.record(f"Logit FVE by the accompanying-pizza formula, PCs {f.components[0]}, {f.components[1]} "
                     f"(frequency {f.k} ≡ ±2 × {f.accompanies} mod p; accompanies circle {i + 1})", f.pizza,
                     source=SOURCE_ACCOMPANYING_FVE[i] if i < len(SOURCE_ACCOMPANYING_FVE) else None)
    return v


TABLES = ("the source's sweep tables (fjzzq2002/pizza result/1l_fixedwidth.csv and 1l_varywidth.csv; built-in run set "
          "zhong2023_sweep)")

ATTENTION_RATE_SELECTS = ClaimSpec(
    family=FAMILY,
    id="attention_rate_selects_algorithm",
    statement="Over a sweep of the attention rate, constant attention (rate 0) gives the pizza and softmax attention "
              "(rate 1) the clock: over the sweep's generalised 1-layer runs, gradient symmetricity falls as the rate "
              "rises.",
    source=f"{CP}, §5, result/1l_*.svg and the tables behind them (result/1l_*.csv)",
    thresholds={
        "max_spearman": T(-0.5, f"{REV3}: Spearman(α, GS) ≤ −0.5 over a set's generalised 1-layer runs (was −0.6); "
                                f"{TABLES}, filtered so (and to eqn_sign 0, diff_vocab 0: 1 947 and 981 runs), give "
                                f"−0.791 (fixed width) and −0.694 (varying width)", source=-0.791),
        "min_accuracy": T(0.99, f"{REV3}: generalised runs only, accuracy on the held-out pairs ≥ 0.99 (the tables' "
                                f"validation_accuracy; a trained run's final test accuracy)"),
        "min_circularity": T(0.9, f"{REV3}: circular embeddings only, circularity (G-CIRC, eval-main.ipynb "
                                  f"'Circularity') ≥ 0.9, as the source's README advises for its tables (source value: Model A's "
                                  f"circularity)", source=MODEL_A_CIRCULARITY),
        "min_members": T(3, "ours: a rank correlation over fewer than three attention rates says nothing",
                         integer=True, positive=True),
    },
    validation=Validation(
        "validated",
        "the source's sweep tables, each judged as its own sweep (catalogue Revision 3)",
        (ZHONG_SWEEP,)),
    )

# What the catalogue (Revision 3) and the tables' README report for the filtered tables, recorded next to ours:
# Spearman(α, GS), Spearman(α, DI of the largest incorrect logit) and the median GS per α bin (fixed width only).
# A sweep of trained runs is recorded against the fixed-width table's values (width 128, as the built-in models).
SOURCE_SWEEPS = {
    "1l_fixedwidth": {"spearman_gs": -0.791, "spearman_di": 0.667, "runs": 1947,
                      "medians": (0.993, 0.992, 0.993, 0.763, 0.541)},
    "1l_varywidth": {"spearman_gs": -0.694, "spearman_di": 0.552, "runs": 981, "medians": None},
}
RATE_BINS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))  # the last bin includes 1


@dataclass(frozen=True)
class SweepRun:
    """One run of an attention-rate sweep as :func:`attention_rate_selects` reads it. ``rate``: the attention rate
    α ∈ [0, 1]; ``gs``: the final model's gradient symmetricity (Def. 4.1); ``accuracy``: its accuracy on the
    held-out pairs (fraction; NaN when unknown); ``circularity``: G-CIRC of its embedding; ``n_layers``;
    ``standard_inputs``: inputs [a, b] (the tables' eqn_sign 0 and diff_vocab 0; a trained sweep's members all
    share their inputs, so True); ``di_top_incorrect``: the distance irrelevance of the largest incorrect logit
    (recorded, not judged; None when not measured); ``sweep``: the sweep it belongs to (a set of several, such as
    the source's two tables, is judged sweep by sweep); ``name``: the run."""

    rate: float
    gs: float
    accuracy: float
    circularity: float
    n_layers: int = 1
    standard_inputs: bool = True
    di_top_incorrect: float | None = None
    sweep: str = ""
    name: str = ""


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def _in_bin(rate: float, lo: float, hi: float) -> bool:
    return lo <= rate < hi or (hi >= 1.0 and rate == hi)


def generalised_one_layer(runs: list[SweepRun], min_accuracy: float, min_circularity: float) \
        -> tuple[list[SweepRun], dict[str, int]]:
    """The runs Revision 3's rule reads: one layer, inputs [a, b], accuracy ≥ ``min_accuracy``, circularity ≥
    ``min_circularity``; and how many each condition left out, in that order (``{"more than one layer": …}``)."""
    out, dropped = [], {"more than one layer": 0, "other inputs": 0, "not generalised": 0, "not circular": 0}
    for r in runs:
        reason = ("more than one layer" if r.n_layers != 1 else "other inputs" if not r.standard_inputs
                  else "not generalised" if not r.accuracy >= min_accuracy
                  else "not circular" if not r.circularity >= min_circularity else None)
        if reason is None:
            out.append(r)
        else:
            dropped[reason] += 1
    return out, dropped


MAX_CHARTED_MEMBERS = 200  # a sweep of trained runs is charted member by member; a table's thousands are summarised


def _record_sweep_circularity(v: Verdict, members: list[SweepRun], name: str, min_circularity: float) -> None:
    """The circularity (G-CIRC) the filter read, for every member of a sweep (trained or a table's row): how many
    fall below ``min_circularity`` and the median, and, for a sweep of at most :data:`MAX_CHARTED_MEMBERS`, each
    member's value against its rate."""
    circ = [r.circularity for r in members if r.circularity == r.circularity]  # NaN: undefined, counted as below
    below = sum(not r.circularity >= min_circularity for r in members)
    v.record("circularity (G-CIRC) of the members' final embeddings, median", _median(circ) if circ else None,
             label=name, source=MODEL_A_CIRCULARITY,
             detail=f"{below} of {len(members)} below {min_circularity:g} (the filter leaves them out)")
    if len(members) <= MAX_CHARTED_MEMBERS:
        v.add_points("circularity (G-CIRC) of the final embedding, every member", "model.attn_rate",
                     [r.rate for r in members], [r.circularity if r.circularity == r.circularity else None
                                                 for r in members], label=name)


@ATTENTION_RATE_SELECTS.rule
def attention_rate_selects(runs: list[SweepRun], th) -> Verdict:
    """Catalogue Revision 3: over a set's generalised 1-layer runs (:func:`generalised_one_layer`), Spearman(α, GS) ≤
    ``max_spearman``, judged for each sweep of the set (``SweepRun.sweep``: the source's two tables are two sweeps,
    at one width and over widths, where the pizza/clock boundary moves with the width). Recorded beside it, per
    sweep: the runs kept and why the others were left out, Spearman(α, DI of the largest incorrect logit) and the
    median GS per α bin [0, .2) … [.8, 1], each next to the source's value (:data:`SOURCE_SWEEPS`); with several
    sweeps, the Spearman over all of them together. A sweep with fewer than ``min_members`` distinct rates among its
    kept runs is not judged; the claim is skipped when no sweep can be."""
    from claimlens.core.series import spearman

    v = Verdict()
    sweeps: dict[str, list[SweepRun]] = {}
    for r in runs:
        sweeps.setdefault(r.sweep, []).append(r)
    judged, pooled = 0, []
    for name, members in sweeps.items():
        kept, dropped = generalised_one_layer(members, th["min_accuracy"], th["min_circularity"])
        kept.sort(key=lambda r: r.rate)
        source = SOURCE_SWEEPS.get(name, SOURCE_SWEEPS["1l_fixedwidth"])
        v.record("generalised 1-layer runs kept", len(kept), label=name, source=SOURCE_SWEEPS[name]["runs"]
                 if name in SOURCE_SWEEPS else None,
                 detail=f"of {len(members)}; left out: " + ", ".join(f"{k} {n}" for k, n in dropped.items()))
        rates, gs = [r.rate for r in kept], [r.gs for r in kept]
        v.add_points("gradient symmetricity of the final model, generalised 1-layer runs", "model.attn_rate",
                     rates, gs, label=name)
        _record_sweep_circularity(v, members, name, th["min_circularity"])
        n_rates = len(set(rates))
        if n_rates < int(th["min_members"]):
            v.not_judged(f"Spearman correlation of attention rate and gradient symmetricity ({name})",
                         f"{n_rates} distinct attention rate(s) among the kept runs; the rule needs ≥ "
                         f"{int(th['min_members'])}")
            continue
        judged += 1
        pooled += kept
        v.check("Spearman correlation of attention rate and gradient symmetricity", spearman(rates, gs), "<=",
                th["max_spearman"], label=name, source=source["spearman_gs"], detail=f"{len(kept)} runs")
        di = [(r.rate, r.di_top_incorrect) for r in kept if r.di_top_incorrect is not None]
        if len(di) == len(kept):
            v.record("Spearman correlation of attention rate and distance irrelevance of the largest incorrect "
                     "logit (train-main.py's variant, the tables' column)", spearman(rates, [d for _, d in di]),
                     label=name, source=source["spearman_di"], detail=f"{len(kept)} runs")
        for i, (lo, hi) in enumerate(RATE_BINS):
            inside = [r.gs for r in kept if _in_bin(r.rate, lo, hi)]
            if inside:
                v.record(f"median GS for attention rate in [{lo:g}, {hi:g}{']' if hi >= 1 else ')'}", _median(inside),
                         label=name, source=source["medians"][i] if source["medians"] else None,
                         detail=f"{len(inside)} run(s)")
    if not judged:
        return v.skip("no sweep of the set has generalised 1-layer runs at ≥ "
                      f"{int(th['min_members'])} distinct attention rates (the counts are recorded)")
    if len(sweeps) > 1 and judged > 1:
        v.record("Spearman correlation of attention rate and gradient symmetricity, all sweeps of the set together",
                 spearman([r.rate for r in pooled], [r.gs for r in pooled]), detail=f"{len(pooled)} runs")
    return v

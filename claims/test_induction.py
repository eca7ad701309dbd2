"""Induction heads and the phase change of a small attention-only model (claims_catalogue §3.6; Olsson et al. 2022;
the training-dynamics post's induction toy).

Judged on runs of the repeated-subsequence task — in a plain session the built-in ``induction_2l`` (2 layers,
where the phase change should happen) and ``induction_1l`` (its 1-layer control) — and on the source's own digitised
loss curves (``--run nanda2022``). Rules, statements and thresholds: :mod:`claimlens.families.induction.rules`.
"""

import pytest

from claimlens import Series, Verdict
from claimlens.families.induction import rules as IND


def _is_curves(run):
    return not run.has_weights


def _curve(run, name, what):
    if name not in run.series:
        pytest.skip(f"curves run {run.name!r} has no {name!r} curve: {what}")
    return run.series[name]


def _step_loss(run, training_log):
    """The loss at every step: a run's training log (fresh batches: never-seen data), or the source's curve."""
    if _is_curves(run):
        return _curve(run, "induction_loss", "this claim reads the induction toy's loss per step")
    return training_log["train_loss"]


@pytest.mark.claim(IND.PHASE_CHANGE_IS_SUDDEN)
def test_phase_change_is_sudden(run, training_log, claim):
    if not _is_curves(run) and run.spec.task.n_sequences:
        pytest.skip(f"run {run.name!r} trains on a finite set of {run.spec.task.n_sequences} sequences: the claim is "
                    f"about fresh data (induction_finite_data_groks judges this run)")
    claim.judge(_step_loss(run, training_log))


@pytest.mark.claim(IND.HEADS_FORM_AT_THE_PHASE_CHANGE)
def test_heads_form_at_the_phase_change(run, training_log, induction, claim):
    if run.spec.task.n_sequences:
        pytest.skip(f"run {run.name!r} trains on a finite set of {run.spec.task.n_sequences} sequences: the drop "
                    f"window of this claim is the fresh-data phase change")
    m = induction
    best_induction = max((m.best(m.induction_score, layer) for layer in range(1, m.n_layers)),
                         key=lambda s: float(s.values.max()), default=None)
    judged = {s.name for s in (best_induction, m.best(m.previous_token_score, 0)) if s is not None}
    for layer in range(m.n_layers):  # each layer's best head; the rule adds the two curves it judges
        for series in (m.best(m.induction_score, layer), m.best(m.previous_token_score, layer)):
            if series.name not in judged or m.n_layers < 2:
                claim.chart(series, x_name="step")
    head = max(range(len(m.induction_score.labels)), key=lambda i: float(m.induction_score.data[i].max()))
    recorded = Verdict()
    recorded.record("best induction score of any head, layer 0 included (× chance)",
                    float(m.induction_score.data[head].max()) / m.chance, label=m.induction_score.labels[head])
    claim.judge(recorded)
    if m.n_layers < 2:
        pytest.skip(f"run {run.name!r} has 1 layer: no second layer to hold an induction head (its control claim "
                    f"is induction_needs_two_layers)")
    # Recorded, not judged: where the later layers' heads do attend relative to the previous occurrence (d = 1 is
    # the induction score); a peak at d > 1 is a shifted induction circuit the claim's score does not count.
    label, d, score = max((m.best_offset(layer) for layer in range(1, m.n_layers)), key=lambda t: t[2])
    recorded = Verdict()
    recorded.record("largest attention of a later-layer head to the position d after the previous occurrence "
                    f"(final checkpoint; d = 1 … {2 * run.spec.task.repeat_len + 1} scanned; d = 1 is the induction "
                    "score)", score, label=f"{label}, d = {d}")
    claim.judge(recorded)
    if d != 1:
        layer = int(label[1:label.index("H")])
        claim.chart(m.offset_series(layer, d), x_name="step")
    claim.judge(training_log["train_loss"], best_induction,
                m.best(m.previous_token_score, 0), m.n_layers, m.chance, m.previous_chance)


@pytest.mark.claim(IND.NEEDS_TWO_LAYERS)
def test_needs_two_layers(run, training_log, induction, two_layer_partner, claim):
    if run.spec.model.n_layers != 1:
        pytest.skip(f"run {run.name!r} has {run.spec.model.n_layers} layers: the claim is about the 1-layer control")
    log = two_layer_partner.log()
    window = IND.drop_window(Series.of("train_loss", log["epoch"], log["train_loss"]))
    if isinstance(window, str):
        pytest.fail(f"the 2-layer run of the same recipe has no plateau to compare with: {window}", pytrace=False)
    claim.note(f"2-layer run of the same recipe: {two_layer_partner.name} (plateau {window.plateau:.3f} nats, "
               f"drop {window.onset}–{window.end})")
    claim.judge(training_log["train_loss"], induction.best(induction.induction_score, 0),
                induction.chance, window.plateau)


@pytest.mark.claim(IND.FINITE_DATA_GROKS)
def test_finite_data_groks(run, training_log, claim):
    if _is_curves(run):
        train = _curve(run, "induction_finite_train_loss", "this claim reads the finite-data run's train loss")
        test = _curve(run, "induction_finite_test_loss", "this claim reads the finite-data run's test loss")
        d_vocab = 128
    else:
        if not run.spec.task.n_sequences:
            pytest.skip(f"run {run.name!r} draws fresh sequences at every step: the claim needs a finite training set "
                        f"(the built-in spec fixtures/induction_finite.toml; long)")
        train = training_log["train_loss"]
        test = training_log["test_loss"].finite()
        d_vocab = run.spec.task.d_vocab
    claim.judge(train, test, d_vocab)

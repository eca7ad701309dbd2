"""Grokking and its progress measures (Nanda, Chan, Lieberum, Smith, Steinhardt 2023; ARENA).

Claim ids, metrics and pass rules follow shared/claims_catalogue.md §3.1 in *shape mode* (any run of the
recipe, phase boundaries detected from the run: ``t1`` memorisation end, ``t2`` circuit-formation end,
``t3`` cleanup end; see ``claimlens.series.detect_phases``). Every test records the series and scalars
it was judged on through the ``evidence`` fixture.
"""

import math

import pytest

from claimlens.plugin.helpers import require_phases as need_phases
from claimlens.plugin.helpers import series_of as series
from claimlens.series import Series, assert_before, assert_threshold, lead_margin

NCLSS = "Nanda et al. 2023, 'Progress measures for grokking via mechanistic interpretability'"


@pytest.mark.claim(
    id="grokking_delayed_generalisation",
    statement="Train accuracy saturates early; test accuracy is still low (≤ 0.5) when memorisation ends (t1), "
              "stays low for many times longer, then rises to ~100%.",
    source=f"{NCLSS}, §3 and Fig. 2",
)
def test_grokking_delayed_generalisation(run, evidence, thresholds, request):
    th = thresholds
    log = run.log()
    if log["epoch"].numel() < 10:
        pytest.skip(f"run {run.name!r} has a training log of {log['epoch'].numel()} rows; need ≥ 10 epochs")
    train_acc = Series("train_acc", log["epoch"], log["train_acc"])
    test_acc = Series("test_acc", log["epoch"], log["test_acc"])
    evidence.series("train_acc", train_acc.epochs, train_acc.values)
    evidence.series("test_acc", test_acc.epochs, test_acc.values)
    memorised = train_acc.first_crossing(th["memorised_train_acc"])
    generalised = test_acc.first_crossing(th["generalised_test_acc"])
    final_test = float(test_acc.values[-1])
    evidence.measure(f"first epoch train acc ≥ {th['memorised_train_acc']:g}", memorised)
    evidence.measure(f"first epoch test acc ≥ {th['generalised_test_acc']:g}", generalised)
    evidence.measure("final test acc", final_test, threshold=th["final_test_acc"], op=">=",
                     epoch=int(test_acc.epochs[-1]))

    assert memorised is not None, (
        f"train accuracy never reached {th['memorised_train_acc']:g} (max {float(train_acc.values.max()):.3f} "
        f"at epoch {int(train_acc.epochs[train_acc.values.argmax()])})"
    )
    evidence.measure("first epoch train acc memorised (latest allowed)", memorised,
                     threshold=th["memorised_by_epoch"], op="<=")
    assert_threshold(f"first epoch with train accuracy ≥ {th['memorised_train_acc']:g}", memorised,
                     th["memorised_by_epoch"], "<=")
    assert_threshold("test accuracy at the last epoch (the run did not generalise)", final_test,
                     th["final_test_acc"], ">=", epoch=int(test_acc.epochs[-1]))
    assert generalised is not None, (
        f"test accuracy never reached {th['generalised_test_acc']:g} (max {float(test_acc.values.max()):.3f})")
    ratio = generalised / max(memorised, 1)
    evidence.measure("delay ratio (first generalised epoch / first memorised epoch)", ratio,
                     threshold=th["delay_ratio"], op=">=")
    assert_threshold(f"generalisation delay: test acc ≥ {th['generalised_test_acc']:g} at epoch {generalised} over "
                     f"train acc ≥ {th['memorised_train_acc']:g} at epoch {memorised}", ratio, th["delay_ratio"],
                     ">=")
    if run.spec.model.kind != "transformer":
        evidence.note("t1 needs the transformer's excluded loss; the 'test acc ≤ 0.5 at t1' part was not judged")
        return
    phases = request.getfixturevalue("phases")
    need_phases(phases, "t1")
    evidence.phase_lines(phases.as_dict())
    at_t1 = test_acc.at(phases.t1)
    evidence.measure("test acc at t1", at_t1, threshold=th["max_test_acc_at_t1"], op="<=", epoch=phases.t1)
    assert_threshold("test accuracy at the end of memorisation (t1)", at_t1, th["max_test_acc_at_t1"], "<=",
                     epoch=phases.t1)


@pytest.mark.claim(
    id="phase_boundaries_mainline",
    statement="Training splits into memorisation, circuit formation and cleanup: t1 < t2 < t3 (shape mode).",
    source=f"{NCLSS}, §5.2, Fig. 7",
)
def test_phase_boundaries(run_series, phases, evidence):
    evidence.phase_lines(phases.as_dict())
    for name in ("excluded_loss_all_keys", "test_loss"):
        s = series(run_series, name)
        evidence.series(name, s.epochs, s.values, log=True)
    need_phases(phases, "t1", "t2", "t3")
    for name in ("t1", "t2", "t3"):
        evidence.measure(name, getattr(phases, name))
    assert_before(("memorisation end t1", phases.t1), ("circuit-formation end t2", phases.t2), margin=1)
    assert_before(("circuit-formation end t2", phases.t2), ("cleanup end t3", phases.t3), margin=1)


@pytest.mark.claim(
    id="restricted_loss_falls_before_test_loss",
    statement="Restricted (trig) loss falls by 10x after memorisation well before the test loss does.",
    source=f"{NCLSS}, Fig. 7 (top right); ARENA 'Small lag to clean up noise'",
)
def test_restricted_loss_falls_before_test_loss(run, run_series, phases, evidence, thresholds):
    need_phases(phases, "t1")
    restricted, test = series(run_series, "trig_loss_all"), series(run_series, "test_loss")
    evidence.series("restricted_loss[all]", restricted.epochs, restricted.values, log=True)
    evidence.series("test_loss", test.epochs, test.values, log=True)
    evidence.phase_lines(phases.as_dict())
    fall = thresholds["fall_factor"]
    t_r = restricted.first_crossing(restricted.at(phases.t1) / fall, "below", after=phases.t1)
    t_t = test.first_crossing(test.at(phases.t1) / fall, "below", after=phases.t1)
    evidence.measure(f"restricted loss {fall:g}x below its t1 value", t_r)
    evidence.measure(f"test loss {fall:g}x below its t1 value", t_t)
    margin = 0
    if t_r is not None and t_t is not None:
        # The catalogue's 1000 epochs of lead, at the paper's grokking epoch of ~9.4k, as a share of the test-loss
        # fall epoch; and more than the checkpoint spacing around the two events.
        margin = lead_margin(run_series.epochs, t_r, t_t, fraction=thresholds["lead_fraction"],
                             min_checkpoints=thresholds["min_lead_checkpoints"])
        evidence.measure("lead of restricted over test loss (epochs)", t_t - t_r, threshold=margin, op=">=")
    assert_before((f"restricted loss falls {fall:g}x", t_r), (f"test loss falls {fall:g}x", t_t), margin=margin)


@pytest.mark.claim(
    id="trig_loss_all_equals_train",
    statement="Trig (restricted) loss on all data equals trig loss on the training set, at every checkpoint.",
    source="ARENA 'Analysis during training' (trig loss); NCLSS Fig. 7 (rule: |log10 ratio| ≤ 0.05)",
)
def test_trig_loss_all_equals_train(run, epoch, run_series, evidence, thresholds):
    i = run_series.epochs.tolist().index(epoch)
    all_, train = float(run_series["trig_loss_all"].values[i]), float(run_series["trig_loss_train"].values[i])
    gap = abs(math.log10(train / all_))
    evidence.measure("trig loss, all pairs", all_, epoch=epoch)
    evidence.measure("trig loss, train pairs", train, epoch=epoch)
    limit = thresholds["max_abs_log10_ratio"]
    evidence.measure("|log10(train / all)|", gap, threshold=limit, op="<=", epoch=epoch)
    assert_threshold(f"|log10(trig loss train / all)| (train {train:.4g}, all {all_:.4g})", gap, limit, "<=",
                     epoch=epoch)

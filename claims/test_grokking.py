"""Grokking and its phases (Nanda, Chan, Lieberum, Smith, Steinhardt 2023; ARENA): catalogue §3.1.

Each test fetches what its claim reads from the run and hands it to the claim's rule
(:mod:`claimlens.rules.grokking`: the statement, the thresholds with the source's own values, and the pure
rule, which also judges the source's digitised curves: ``pytest claims/ --run nanda2022``). Phase
boundaries are detected from the run (shape mode): ``t1`` memorisation end, ``t2`` circuit-formation end,
``t3`` cleanup end (:func:`claimlens.series.detect_phases`).
"""

import math

import pytest

from claimlens.rules import grokking as G


@pytest.mark.claim(G.DELAYED_GENERALISATION)
def test_grokking_delayed_generalisation(run, training_log, claim, request):
    # The t1 part needs the transformer's excluded loss; on other runs it is recorded as not judged.
    transformer = getattr(run, "kind", None) == "curves" or run.spec.model.kind == "transformer"
    phases = request.getfixturevalue("phases") if transformer else None
    claim.judge(G.delayed_generalisation, training_log["train_acc"], training_log["test_acc"], phases)


@pytest.mark.claim(G.PHASE_BOUNDARIES)
def test_phase_boundaries(run_series, phases, claim):
    claim.judge(G.phase_boundaries, run_series, phases)


@pytest.mark.claim(G.EXCLUDED_LOSS_RISES)
def test_excluded_loss_rises(run_series, phases, claim):
    claim.judge(G.excluded_loss_rises, run_series, phases)


@pytest.mark.claim(G.RESTRICTED_LOSS_LEADS)
def test_restricted_loss_falls_before_test_loss(run_series, phases, claim):
    claim.judge(G.restricted_loss_leads, run_series, phases)


@pytest.mark.claim(G.TRIG_LOSS_IDENTITY)
def test_trig_loss_all_equals_train(run, epoch, run_series, claim):
    restricted = run_series["restricted_loss"]
    balanced = restricted.row("train_balanced").at(epoch)
    claim.judge(G.trig_loss_identity, restricted.row("all").at(epoch), restricted.row("train").at(epoch),
                None if math.isnan(balanced) else balanced, epoch, len(run_series.keys.keys))


@pytest.mark.claim(G.RATIO_PEAKS_AND_RETURNS)
def test_ratio_peaks_then_returns(run_series, phases, claim):
    claim.judge(G.ratio_peaks_and_returns, run_series, phases)


@pytest.mark.claim(G.WEIGHT_NORM_FALLS)
def test_weight_norm_falls_in_phases(run_series, phases, claim):
    claim.judge(G.weight_norm_falls, run_series, phases)


@pytest.mark.claim(G.GINI_JUMPS)
def test_gini_jumps_in_cleanup(run_series, phases, claim):
    claim.judge(G.gini_jumps, run_series, phases)

"""The local learning coefficient over training (catalogue §3.2: TDI grokking example, NV hackathon).

λ̂ is estimated by SGLD at ``--claims-llc-checkpoints`` checkpoints spread evenly over the run, on the training
pairs only, with one SGLD configuration per model kind (``claimlens.families.llc.analysis.DEFAULT_CONFIGS``; the
configuration is recorded with the evidence). ``llc_sampling_is_healthy`` is the gate: when any sampled
checkpoint fails a sampling check, the other LLC claims are skipped with that reason, because a curve of
untrustworthy estimates can neither confirm nor refute them. Rules and thresholds: :mod:`claimlens.families.llc.rules`.
"""

from __future__ import annotations

import pytest

from claimlens import Verdict
from claimlens.families.llc import rules as L


def _record(claim, llc, name: str = "llc"):
    s = llc.series(name)
    claim.chart(name, s.epochs, s.values)
    claim.chart(f"{name} chain std", llc.epochs, llc.std)
    cfg = llc.config
    claim.note(f"SGLD: ε={cfg['epsilon']:g}, γ={cfg['gamma']:g}, nβ={cfg['nbeta']:.4g}, "
               f"{cfg['num_chains']} chains × {cfg['num_draws']} draws after {cfg['num_burnin']} burn-in, "
               f"batch {cfg['batch_size'] or 'full'}, orth_grad={cfg['orth_grad']}, seed {cfg['seed']}")
    return s


def _gate(*estimates) -> None:
    for llc in estimates:
        reason = L.unhealthy_reason(llc.epochs, llc.problems)
        if reason:
            pytest.skip(reason)


@pytest.mark.claim(L.SAMPLING_HEALTHY)
def test_llc_sampling_is_healthy(llc_series, claim):
    _record(claim, llc_series)
    acceptance = llc_series.series("mean MALA acceptance", "acceptance")
    claim.chart(acceptance.name, acceptance.epochs, acceptance.values)
    claim.judge(llc_series.epochs, llc_series.problems)


@pytest.mark.claim(L.RISES_THEN_FALLS)
def test_llc_rises_in_memorisation_then_falls(llc_series, training_log, claim):
    llc = _record(claim, llc_series)
    _gate(llc_series)
    claim.judge(llc, training_log["test_acc"])


@pytest.mark.claim(L.TRACKS_TEST_LOSS)
def test_llc_tracks_test_loss(llc_series, training_log, claim):
    llc = _record(claim, llc_series)
    _gate(llc_series)
    claim.judge(llc, training_log["test_loss"])


@pytest.mark.claim(L.SENSITIVE_TO_TRANSITION)
def test_llc_sensitive_to_grokking_transition(llc_series, llc_series_orth, training_log, claim):
    llc = _record(claim, llc_series)
    orth = _record(claim, llc_series_orth, "llc (orthogonal to gradient)")
    _gate(llc_series, llc_series_orth)
    claim.judge(llc, orth, training_log["test_loss"])

# ---- over a set of runs (the ``run_set`` fixture: a sweep named with --run, or the built-in sweeps with
# --claims-sweeps; skipped, saying the cost, without one)


@pytest.mark.run_set_axis("task.p")
@pytest.mark.claim(L.LINEAR_IN_P)
def test_llc_linear_in_p(run_set, claim):
    """λ̂ at each member's first and final checkpoints (the first for the initialisation negative control of
    catalogue Revision 3: one more SGLD estimate per member), cached with the other LLC estimates."""
    if not run_set.varies("task.p"):
        pytest.skip(f"run set {run_set.name!r} does not vary task.p (its axes: {list(run_set.axes)})")
    from claimlens.families.llc.analysis import llc_over_run

    members, problems = [], {}
    for p, run in run_set.along("task.p"):
        if not run.has_weights:
            pytest.skip(f"run set {run_set.name!r} has curves only: λ̂ is sampled around the weights")
        if run.spec.model.kind != "mlp":
            pytest.skip(f"run set {run_set.name!r} sweeps a {run.spec.model.kind}: the claim is about the "
                        f"hackathon's MLP")
        config = L.linear_in_p_config(len(run.task.train_idx))
        est = llc_over_run(run, config, max_checkpoints=2)  # the first and the final checkpoint
        se = est.std / est.per_chain.shape[1] ** 0.5
        first = 0 if len(est.epochs) > 1 else None
        members.append(L.PMember(int(p), float(est.mean[-1]), float(run.log()["test_acc"][-1]), float(se[-1]),
                                 None if first is None else float(est.mean[0]),
                                 None if first is None else float(se[0])))
        problems[int(p)] = [t for i, e in enumerate(est.epochs) for t in est.problems[i]]
        sampled = Verdict()
        sampled.record("checkpoints sampled (first, final)", str(est.epochs), label=f"p = {int(p)}")
        claim.judge(sampled)
    claim.judge(members, problems=problems)

"""Low rank of training trajectories (claims_catalogue §3.4, §3.7; the post on the SVD of gradient updates and its
comments; Olsson et al. 2022's per-token-loss PCA).

Judged on every run with weights and ≥ 10 checkpoints — in a plain session the default run and the induction models
(whose 1-layer control has no phase change to turn at). Rules, statements and thresholds:
:mod:`claimlens.families.lowrank.rules`.
"""

import pytest

from claimlens import Verdict
from claimlens.families.lowrank import rules as LR


@pytest.mark.claim(LR.GRADIENT_UPDATES_ARE_LOW_RANK)
def test_gradient_updates_are_low_rank(run, lowrank, claim):
    claim.judge(lowrank.gradients, len(lowrank.epochs))


@pytest.mark.claim(LR.CHECKPOINT_MATRIX_IS_LOW_RANK)
def test_checkpoint_matrix_is_low_rank(run, lowrank, claim):
    size = Verdict()
    size.record("parameters per checkpoint", lowrank.n_params)
    claim.judge(size)
    claim.judge(lowrank.checkpoints, len(lowrank.epochs))


@pytest.mark.claim(LR.PCA_TURNS_AT_PHASE_CHANGE)
def test_per_example_loss_pca_turns_at_phase_change(request, run, lowrank, training_log, claim):
    from claimlens.families.lowrank.analysis import shuffled_turns

    unresolved = None
    if run.spec.task.is_sequences:
        window = LR.drop_window(training_log["train_loss"])
        if isinstance(window, str):
            boundaries, unresolved = {"phase change": None}, f"no phase change: {window}"
        else:
            boundaries = {"phase change": window.steepest}
    else:
        phases = request.getfixturevalue("phases")
        boundaries, unresolved = {"t1": phases.t1, "t2": phases.t2, "t3": phases.t3}, phases.unresolved
    claim.judge(lowrank.pca, lowrank.explained, lowrank.epochs, boundaries,
                null_angles=shuffled_turns(lowrank.pca), unresolved=unresolved)

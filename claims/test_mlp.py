"""The MLP of "Grokking with weight decay" (catalogue §1.6, §3.5): summed embeddings grok late, concatenated ones
never do, the weight norm falls between memorisation and grokking, and long training spikes (informational).

Judged on MLP runs of the modular-addition task; in a plain session on the built-in ``mlp_sum`` and ``mlp_concat``
(the source's recipe, 30 000 epochs each). Each claim names the model it is about (``model.combine``) and skips
the other with the reason; each rule judged on the other model is its negative control (``tests/test_mlp.py``).
Rules, statements and thresholds: :mod:`claimlens.families.mlp.rules`.
"""

import pytest

from claimlens import needs_mlp
from claimlens.families.mlp import rules as MLP

ABOUT = "the claim is about the MLP of 'Grokking with weight decay'"


@pytest.mark.claim(MLP.SUMMED_EMBEDDINGS_GROK)
def test_mlp_summed_embeddings_grok(run, training_log, claim):
    needs_mlp(run, ABOUT)
    claim.judge(training_log, run.spec.model.combine)


@pytest.mark.claim(MLP.CONCATENATED_NEVER_GROK)
def test_mlp_concatenated_embeddings_never_grok(run, training_log, claim):
    needs_mlp(run, ABOUT)
    claim.judge(training_log["test_acc"], run.spec.model.combine)


@pytest.mark.claim(MLP.WEIGHT_NORM_DECLINES)
def test_mlp_weight_norm_declines_after_memorisation(run, weight_norms, training_log, claim):
    sum_sq, sum_abs = weight_norms
    claim.judge(sum_sq, sum_abs, training_log["test_acc"], run.spec.model.combine)


@pytest.mark.claim(MLP.LONG_TRAINING_SPIKES)
def test_mlp_long_training_spikes(run, training_log, claim):
    needs_mlp(run, ABOUT)
    claim.judge(training_log["test_loss"].at_epochs(run.epochs))

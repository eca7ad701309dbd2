"""claimlens: published claims about training dynamics as pytest tests over a run's checkpoints.

What a claim author uses, and nothing else (README, "A claim of your own")::

    import pytest
    from claimlens import ClaimSpec, Threshold, Verdict

    MEMORISES = ClaimSpec(id="memorises_the_training_set", statement="train accuracy reaches 0.99",
                          source="my notebook", thresholds={"min_acc": Threshold(0.99, "ours")})

    @MEMORISES.rule
    def memorises(train_acc, th) -> Verdict:
        v = Verdict()
        v.check("train accuracy at the last epoch", train_acc.values[-1], ">=", th["min_acc"],
                epoch=train_acc.epochs[-1])
        return v

    @pytest.mark.claim(MEMORISES)
    def test_memorises(training_log, claim):
        claim.judge(training_log["train_acc"])

- :class:`ClaimSpec` the claim (id, statement, source, kind, thresholds, validation), :meth:`ClaimSpec.rule`
  binding its rule; :class:`Threshold` one pass threshold with its reason and the source's value;
  :class:`Validation` what the rule was checked on;
- :class:`Verdict` what a rule found (``check``, ``record``, ``not_judged``, ``skip``); :class:`Series` a
  per-epoch series (what rules read; ``first_crossing``, ``at``, ``before``);
- :class:`Claim` the type of the ``claim`` fixture (``judge``, ``note``, ``chart``, ``thresholds``);
- the skip helpers a claim test calls when a run cannot show its claim: :func:`needs_weights`,
  :func:`needs_transformer`, :func:`needs_one_layer`, :func:`needs_equals_token`, :func:`needs_mlp`,
  :func:`needs_sequences`.

Names are imported on first use: ``import claimlens`` (and the pytest plugin) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_WHERE = {
    "ClaimSpec": "claimlens.core.verdicts",
    "Threshold": "claimlens.core.verdicts",
    "Validation": "claimlens.core.verdicts",
    "Verdict": "claimlens.core.verdicts",
    "Series": "claimlens.core.series",
    "Claim": "claimlens.plugin.claim",
    "needs_weights": "claimlens.plugin.fixtures",
    "needs_transformer": "claimlens.plugin.fixtures",
    "needs_one_layer": "claimlens.plugin.fixtures",
    "needs_equals_token": "claimlens.plugin.fixtures",
    "needs_mlp": "claimlens.plugin.fixtures",
    "needs_sequences": "claimlens.plugin.fixtures",
}

__all__ = [
    "Claim",
    "ClaimSpec",
    "Series",
    "Threshold",
    "Validation",
    "Verdict",
    "needs_equals_token",
    "needs_mlp",
    "needs_one_layer",
    "needs_sequences",
    "needs_transformer",
    "needs_weights",
]
assert set(__all__) == set(_WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from claimlens.core.series import Series
    from claimlens.core.verdicts import ClaimSpec, Threshold, Validation, Verdict
    from claimlens.plugin.claim import Claim
    from claimlens.plugin.fixtures import (
        needs_equals_token,
        needs_mlp,
        needs_one_layer,
        needs_sequences,
        needs_transformer,
        needs_weights,
    )


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'claimlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

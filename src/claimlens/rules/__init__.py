"""Pass rules: each published claim's spec (id, statement, source, kind, thresholds with the source's own
values) and its rule, a pure function of series and measured numbers returning a :class:`Verdict`.

``grokking``: the trajectory rules of Nanda et al. 2023 (§3.1); ``algorithm``: the final model's algorithm and
the trajectory of its parts; ``llc``: the learning coefficient (§3.2); ``sets``: claims about sets of runs;
``pizza``: pizza or clock (§3.3); ``induction``: induction heads and the phase change of a small
attention-only model (§3.6); ``lowrank``: low-rank trajectories (§3.4, §3.7). ``CLAIMS`` maps every built-in claim id to
its :class:`ClaimSpec` (``claimlens thresholds`` prints their thresholds). The rule modules import torch; this
package and :mod:`claimlens.rules.base` do not until one of them is asked for.
"""

from __future__ import annotations

import importlib

from claimlens.rules.base import KIND_NOTES, KINDS, Bound, Check, ClaimSpec, Threshold, Verdict

RULE_MODULES = ("grokking", "algorithm", "llc", "sets", "pizza", "induction", "lowrank", "mlp")

__all__ = ["CLAIMS", "KINDS", "KIND_NOTES", "RULE_MODULES", "Bound", "Check", "ClaimSpec", "Threshold", "Verdict",
           "algorithm", "grokking", "induction", "llc", "lowrank", "mlp", "pizza", "sets"]


def __getattr__(name: str):
    if name in RULE_MODULES:
        return importlib.import_module(f"claimlens.rules.{name}")
    if name == "CLAIMS":
        claims = {spec.id: spec for module in RULE_MODULES
                  for spec in vars(importlib.import_module(f"claimlens.rules.{module}")).values()
                  if isinstance(spec, ClaimSpec)}
        globals()["CLAIMS"] = claims
        return claims
    raise AttributeError(f"module 'claimlens.rules' has no attribute {name!r}")

"""The claim families, one folder each: ``families/<family>/`` with ``metrics.py`` (pure tensor functions),
``analysis.py`` (run → series, cached), ``rules.py`` (the claims' specs and rules, pure) and ``fixtures.py`` (the
family's pytest fixtures and the built-in runs it judges), where the family has them; ``claims/test_<family>.py``
states its claims as tests. A family imports only the core (:mod:`claimlens.core`) and the layers below it, never
another family. A family's name is its folder's, carried on every spec (``ClaimSpec.family``) and record.

``CLAIMS`` maps every built-in claim id to its :class:`~claimlens.core.verdicts.ClaimSpec` (``claimlens thresholds``
prints their thresholds). Importing this package imports no torch; ``CLAIMS`` imports the rule modules.
"""

from __future__ import annotations

import importlib


def _discover() -> tuple[str, ...]:
    """Every sub-package of this package, by name: adding a family is adding its folder."""
    import pkgutil

    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


FAMILIES = _discover()  # ("grokking", "induction", "llc", "lowrank", "mlp", "pizza", "sets")

__all__ = ["CLAIMS", "FAMILIES", "fixtures_of", "rules_of"]


def fixtures_of(family: str):
    """The fixtures module of ``family`` (``claimlens.families.<family>.fixtures``: its pytest fixtures and
    ``BUILTIN_RUNS``), or None for a family with no fixtures of its own (``sets``, whose claims take ``run_set``)."""
    import importlib.util

    name = f"claimlens.families.{family}.fixtures"
    return importlib.import_module(name) if importlib.util.find_spec(name) is not None else None


def rules_of(family: str):
    """The rules module of ``family`` (``claimlens.families.<family>.rules``)."""
    return importlib.import_module(f"claimlens.families.{family}.rules")


def __getattr__(name: str):
    if name == "CLAIMS":
        from claimlens.core.verdicts import ClaimSpec

        claims = {spec.id: spec for family in FAMILIES for spec in vars(rules_of(family)).values()
                  if isinstance(spec, ClaimSpec)}
        globals()["CLAIMS"] = claims
        return claims
    raise AttributeError(f"module 'claimlens.families' has no attribute {name!r}")

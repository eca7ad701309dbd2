"""Claim thresholds as a rule reads them, and the user's overrides.

Every claim's thresholds are declared with its rule (:mod:`claimlens.families` (each family's ``rules``): value, where it comes from, and the
source's own value of the quantity) and travel on the claim's marker. A claim's rule reads them through
:class:`Thresholds` (``th["delay_ratio"]``), so a user can judge a run by stricter or looser rules without
editing the claims — in ``pyproject.toml`` next to the tests::

    [tool.claimlens.thresholds.grokking_delayed_generalisation]
    delay_ratio = 10

or for one session, ``pytest claims/ --claims-threshold grokking_delayed_generalisation.delay_ratio=10``
(the command line wins over the file). Unknown claims or names are a usage error that lists the known
ones; every override is written into ``claims.json`` (``threshold_overrides``) and shown in the report,
so a verdict is never read without the rule it was judged by. ``claimlens thresholds`` prints the table.

Counts must be whole numbers and factors that divide must be > 0. Importing this module imports no torch
(the built-in claims' specs are read when first needed).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from claimlens.core.verdicts import Bound, Threshold
from claimlens.errors import ClaimlensError

__all__ = ["Bound", "Threshold", "ThresholdError", "Thresholds", "defaults", "from_options", "from_pyproject",
           "merge", "table", "validate"]


def defaults() -> dict[str, dict[str, Threshold]]:
    """claim id → threshold name → :class:`Threshold`, for every built-in claim (:data:`claimlens.families.CLAIMS`)."""
    from claimlens.families import CLAIMS

    return {cid: dict(spec.thresholds) for cid, spec in CLAIMS.items() if spec.thresholds}


class ThresholdError(ClaimlensError, ValueError):
    """An override names an unknown claim or threshold, or gives a value that is not a finite number."""


class Thresholds(Mapping[str, float]):
    """The thresholds of one claim, overrides applied: ``thresholds["delay_ratio"]`` → ``Bound(5.0)``, a float that
    also carries its name and the source's own value (so a check made with it records both)."""

    def __init__(self, claim_id: str, overrides: Mapping[str, float] | None = None,
                 specs: Mapping[str, Threshold] | None = None):
        self.claim_id = claim_id
        self.specs = dict(defaults().get(claim_id, {}) if specs is None else specs)
        self._values = {name: t.value for name, t in self.specs.items()}
        self._values.update(overrides or {})

    def __getitem__(self, name: str) -> Bound:
        try:
            value = self._values[name]
        except KeyError:
            raise KeyError(f"claim {self.claim_id!r} has no threshold {name!r}; known: {sorted(self._values)}") \
                from None
        spec = self.specs.get(name)
        return Bound(value, name, spec.source if spec is not None else None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


BUILTIN = "builtin"  # validate names against the built-in claims (None: check only that values are numbers)


def _known(known):
    return defaults() if known == BUILTIN else known


def _check(claim_id: str, name: str, value: object, where: str, known) -> float:
    known = _known(known)
    if known is None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ThresholdError(f"{where}: {claim_id}.{name} = {value!r} is not a finite number")
        return float(value)
    if claim_id not in known:
        raise ThresholdError(f"{where}: unknown claim {claim_id!r}; claims with thresholds: {sorted(known)}")
    if name not in known[claim_id]:
        raise ThresholdError(f"{where}: claim {claim_id!r} has no threshold {name!r}; "
                             f"known: {sorted(known[claim_id])}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ThresholdError(f"{where}: {claim_id}.{name} = {value!r} is not a finite number")
    spec = known[claim_id][name]
    if spec.integer and value != int(value):
        raise ThresholdError(f"{where}: {claim_id}.{name} = {value!r} must be a whole number (it is a count)")
    if spec.positive and value <= 0:
        raise ThresholdError(f"{where}: {claim_id}.{name} = {value!r} must be > 0")
    if spec.integer and value < 0:
        raise ThresholdError(f"{where}: {claim_id}.{name} = {value!r} must be ≥ 0")
    return float(value)


def validate(overrides: Mapping[str, Mapping[str, object]], known=BUILTIN,
             where: Mapping[tuple[str, str], str] | None = None) -> dict[str, dict[str, float]]:
    """Overrides checked against the known claims' thresholds (``claim id → name → Threshold``; default: the
    built-in claims); ``where`` names the origin of each ``(claim, name)`` for the error message."""
    known = _known(known)
    out: dict[str, dict[str, float]] = {}
    for claim_id, values in overrides.items():
        for name, value in values.items():
            origin = (where or {}).get((claim_id, name), "threshold override")
            out.setdefault(claim_id, {})[name] = _check(claim_id, name, value, origin, known)
    return out


def from_pyproject(path: Path, known=BUILTIN) -> dict[str, dict[str, float]]:
    """Overrides from ``[tool.claimlens.thresholds.<claim_id>]`` of a pyproject.toml (none if absent)."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ThresholdError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get("claimlens", {}).get("thresholds", {})
    if not isinstance(table, dict):
        raise ThresholdError(f"{path}: [tool.claimlens.thresholds] must be a table of claim tables")
    out: dict[str, dict[str, float]] = {}
    for claim_id, values in table.items():
        where = f"{path} [tool.claimlens.thresholds.{claim_id}]"
        if not isinstance(values, dict):
            raise ThresholdError(f"{where}: expected a table of name = number")
        for name, value in values.items():
            out.setdefault(claim_id, {})[name] = _check(claim_id, name, value, where, known)
    return out


def from_options(items: Iterable[str], known=BUILTIN) -> dict[str, dict[str, float]]:
    """Overrides from ``CLAIM.NAME=VALUE`` strings (``--claims-threshold``)."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        claim_id, dot, name = key.strip().partition(".")
        where = f"--claims-threshold {item!r}"
        if not sep or not dot:
            raise ThresholdError(f"{where}: expected CLAIM.NAME=VALUE, e.g. "
                                 f"trig_loss_all_equals_train.max_abs_log10_ratio=0.1")
        try:
            value = float(raw)
        except ValueError:
            raise ThresholdError(f"{where}: {raw!r} is not a number") from None
        out.setdefault(claim_id, {})[name.strip()] = _check(claim_id, name.strip(), value, where, known)
    return out


def merge(*layers: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Later layers win, name by name."""
    out: dict[str, dict[str, float]] = {}
    for layer in layers:
        for claim_id, values in layer.items():
            out.setdefault(claim_id, {}).update(values)
    return out


def table(overrides: Mapping[str, Mapping[str, float]] | None = None
          ) -> list[tuple[str, str, float, float, float | None, str]]:
    """``(claim id, name, effective value, default, source's value, why)`` for every built-in threshold."""
    overrides = overrides or {}
    return [(cid, name, overrides.get(cid, {}).get(name, t.value), t.value, t.source, t.why)
            for cid, names in defaults().items() for name, t in names.items()]

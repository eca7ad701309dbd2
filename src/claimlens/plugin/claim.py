"""The ``claim`` fixture: the one way a claim test hands over its verdict and records what it was judged on.

A claim's rule is bound to its spec where both are defined (:meth:`claimlens.ClaimSpec.rule`); the test fetches
what the rule reads and hands it over::

    from claimlens.families.grokking import rules as G

    @pytest.mark.claim(G.EXCLUDED_LOSS_RISES)
    def test_excluded_loss_rises(run_series, phases, claim):
        claim.judge(run_series, phases)          # G.excluded_loss_rises, the rule bound to the spec

A claim of your own builds the same three pieces (README, "A claim of your own"), or states its checks in the
test on a :class:`~claimlens.Verdict` and hands that over (``claim.judge(v)``).

Every check is kept, failed or not; after the test body the plugin fails the test once, listing every failed
check (``assert_close`` style), so a failed check never hides the evidence after it. A verdict that cannot be
judged on the run (``Verdict.skip``) skips the test with its reason. Everything goes into the test's record in
``claims.json``. Pure Python apart from pytest (no torch at import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from claimlens.core.jsonable import jsonable
from claimlens.core.verdicts import KINDS, ClaimSpec, Threshold, Verdict


def unit_of(run) -> str:
    """``"step"`` for a run whose checkpoints count optimiser steps on minibatches (the induction toy, a spec with
    ``train.batch_size``), else ``"epoch"`` (full-batch runs, curves-only runs)."""
    spec = getattr(run, "spec", None)
    if spec is None or not getattr(run, "has_weights", True):
        return "epoch"
    return "step" if spec.task.is_sequences or spec.train.batch_size else "epoch"


class ClaimFailure(AssertionError):
    """A claim did not hold; the message lists every failed check: what, measured, threshold and where."""


class ClaimNotJudged(pytest.fail.Exception):
    """A claim could not be judged (an unreadable or non-finite checkpoint, a run that does not fit): no verdict.
    Shown as pytest shows ``pytest.fail(msg, pytrace=False)``, one message without a traceback; recorded with the
    outcome ``error``, never ``failed``."""

    def __init__(self, message: str):
        super().__init__(message, pytrace=False)


def not_judged(run, exc: Exception) -> ClaimNotJudged:
    """The :class:`ClaimNotJudged` for ``exc`` met on ``run``: its message, prefixed with the run's name unless it
    already names the run first."""
    text, prefix = str(exc), f"run {run.name!r}"
    return ClaimNotJudged(text if text.startswith(prefix) else f"{prefix}: {text}")


def outcome_of(report: pytest.TestReport, call: pytest.CallInfo) -> str:
    """A claim test's outcome in the report: ``passed`` or ``skipped`` as pytest says; ``failed`` only for a verdict
    (a :class:`ClaimFailure`, an ``assert`` or ``pytest.fail`` in the claim's body); ``error`` for anything that
    kept the claim from being judged: a failed setup (a fixture met a bad checkpoint), :class:`ClaimNotJudged`,
    or any other exception in the body (a crash is not a refuted claim)."""
    if not report.failed:
        return report.outcome
    if report.when != "call" or call.excinfo is None:
        return "error"
    exc = call.excinfo.value
    if isinstance(exc, ClaimNotJudged):
        return "error"
    return "failed" if isinstance(exc, (AssertionError, pytest.fail.Exception)) else "error"


def spec_of(marker: pytest.Mark, node: pytest.Item) -> ClaimSpec:
    """The :class:`ClaimSpec` of a ``@pytest.mark.claim(...)`` marker on the test ``node``: a spec given positionally,
    or its fields as keywords (``id``, ``statement``, ``source``, ``kind``, ``thresholds``, ``validation``,
    ``min_checkpoints``, ``family``, ``task``). Raises :class:`pytest.UsageError` naming the test for a marker that states no claim."""
    where = node.nodeid
    if marker.args:
        spec = marker.args[0]
        if not isinstance(spec, ClaimSpec) or len(marker.args) > 1:
            raise pytest.UsageError(f"{where}: @pytest.mark.claim takes one ClaimSpec or keywords (id=…, "
                                    f"statement=…, source=…, kind=…, thresholds=…)")
        return spec
    kw = dict(marker.kwargs)
    if not kw.get("id"):
        raise pytest.UsageError(f"{where}: @pytest.mark.claim needs an id (e.g. id='excluded_loss_rises')")
    kind = kw.get("kind", "empirical")
    if kind not in KINDS:
        raise pytest.UsageError(f"{where}: claim kind {kind!r} is not one of {list(KINDS)}")
    thresholds = kw.get("thresholds") or {}
    bad = [n for n, t in thresholds.items() if not isinstance(t, Threshold)]
    if bad:
        raise pytest.UsageError(f"{where}: thresholds {bad} must be claimlens.core.verdicts.Threshold(value, why, source=…)")
    min_checkpoints = kw.get("min_checkpoints", 1)
    if not isinstance(min_checkpoints, int) or isinstance(min_checkpoints, bool) or min_checkpoints < 1:
        raise pytest.UsageError(f"{where}: min_checkpoints must be a positive integer, got {min_checkpoints!r}")
    return ClaimSpec(id=str(kw["id"]), statement=str(kw.get("statement", "")), source=str(kw.get("source", "")),
                     kind=kind, thresholds=thresholds, validation=kw.get("validation", ""),
                     min_checkpoints=min_checkpoints, family=str(kw.get("family", "")),
                     task=str(kw.get("task", "modular_addition")), model=str(kw.get("model", "any")))


def family_of(spec: ClaimSpec, path: Path) -> str:
    """The family a record of ``spec``'s test in the file ``path`` carries: the spec's (a built-in claim's folder
    name) or, for a claim of the user's own without one, its claims file's: ``mine`` for ``claims/test_mine.py``
    (read from the file, not the node id, which is relative to a rootdir that may not hold the file). Only the
    record and the HTML read it; which built-in runs judge a claim follows ``spec.family`` alone."""
    return spec.family or path.stem.removeprefix("test_")


class Claim:
    """The ``claim`` fixture of one claim test: what a claim test touches.

    - :meth:`judge` hands over a verdict: the claim's bound rule called on the data (``claim.judge(*data)``), a
      named rule bound to it (``claim.judge(rule, *data)``) or a :class:`~claimlens.core.verdicts.Verdict` built
      in the test (``v = Verdict(); v.check(...); claim.judge(v)``);
    - :meth:`note` adds a line of text to the record;
    - :meth:`chart` adds a series the claim read (charted in the HTML, kept in ``claims.json``);
    - ``claim.thresholds`` (the claim's thresholds, overrides applied), ``claim.spec`` and ``claim.id`` read.

    Everything judged or charted goes into the test's record; after the body the plugin fails the test once,
    listing every failed check."""

    def __init__(self, spec: ClaimSpec, thresholds):
        self.spec = spec
        self.thresholds = thresholds
        self._verdict = Verdict(spec.id)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.spec.kind

    def judge(self, *args: Any, **kwargs: Any) -> Verdict:
        """Take over a verdict (checks, series, phases, notes); skip the test, with the reason, if it could not be
        judged.

        ``claim.judge(*data)``: calls the rule bound to this test's claim (``@SPEC.rule``), with
        ``claim.thresholds`` as its last argument. ``claim.judge(rule, *data)``: the same with a rule named (a
        claim with several rules); the rule must be bound to this claim. ``claim.judge(verdict)``: a verdict built
        in the test. A rule that reads a series the run lacks (a curves-only run) skips the test with that reason.

        Raises ``TypeError`` for a rule bound to another claim, or a plain function not bound to any (decorate it
        with ``@SPEC.rule``), or a claim with no rule (or several) when none is named."""
        import inspect

        first = args[0] if args else None
        if isinstance(first, Verdict) and len(args) == 1 and not kwargs:
            verdict = first
        else:
            if callable(first) and hasattr(first, "claim"):
                rule, args = first, args[1:]
                if rule.claim is not self.spec and rule.claim.id != self.spec.id:
                    raise TypeError(f"rule {rule.__qualname__} is bound to claim {rule.claim.id!r}, not to this "
                                    f"test's claim {self.spec.id!r}")
            elif inspect.isfunction(first):
                raise TypeError(f"{first.__qualname__} is not bound to a claim: decorate it with @SPEC.rule "
                                f"(claimlens.ClaimSpec.rule), or build a Verdict and pass that")
            elif len(self.spec.rules) == 1:
                rule = self.spec.rules[0]
            else:
                raise TypeError(f"claim {self.spec.id!r} has {len(self.spec.rules) or 'no'} rules bound "
                                f"({', '.join(r.__qualname__ for r in self.spec.rules) or '@SPEC.rule binds one'}): "
                                f"name the one to call, claim.judge(rule, *data), or pass a Verdict")
            from claimlens.core.series import SeriesUnavailable

            try:
                verdict = rule(*args, self.thresholds, **kwargs)
            except SeriesUnavailable as exc:
                pytest.skip(str(exc.args[0]))
        self._verdict.extend(verdict)
        if verdict.skipped:
            pytest.skip(verdict.skipped)
        unresolved = [c for c in verdict.checks if c.status == "not judged"]
        if unresolved and not verdict.judged:  # nothing could be judged: no verdict, never a pass by default
            pytest.skip("not judged: " + "; ".join(f"{c.name}: {c.reason}" for c in unresolved))
        return verdict

    def note(self, text: str) -> None:
        """A line of text in the record (what the claim was compared with, settings used)."""
        self._verdict.note(text)

    def chart(self, series: Any, epochs: Any = None, values: Any = None, *, label: str = "", log: bool = False,
              x_name: str = "epoch") -> None:
        """A series the claim read, charted in the HTML and kept in ``claims.json``: a
        :class:`~claimlens.core.series.Series`, or ``name, epochs, values`` (sequences or 1-d tensors of the same
        length; values in the series' own unit). ``x_name``: the x axis, ``"epoch"`` (a run's checkpoints; read
        as ``"step"`` on a run trained on minibatches) or any other axis (a run set's ``"attention rate"``, a
        spectrum's ``"Fourier mode"``), whose points are charted as a scatter. ``log``: log-scale y."""
        if isinstance(series, str):
            if epochs is None or values is None:
                raise TypeError("claim.chart(name, epochs, values): give the x values and the y values")
            if x_name == "epoch" or x_name == "step":
                from claimlens.core.series import Series

                series = Series.of(series, jsonable(epochs), jsonable(values))
            else:
                self._verdict.add_points(series, x_name, jsonable(epochs), jsonable(values), log=log, label=label)
                return
        self._verdict.add_series(series, label=label, log=log, x_name=x_name)

    # -- for the plugin (not a claim author's)

    def _failures(self):
        return self._verdict.failures

    def _failure_message(self) -> str:
        return self._verdict.failure_message()

    def _set_unit(self, unit: str) -> None:
        """What the run's checkpoints count (``"epoch"`` or ``"step"``): set by the plugin from the run."""
        self._verdict.unit = unit

    def _record_part(self) -> dict[str, Any]:
        """The part of the test's record this claim made: series, measurements, phases, notes (JSON-safe)."""
        v = self._verdict
        return jsonable({
            "series": [{"name": r.series.name, "label": r.label, "epochs": r.series.epochs,
                        "values": r.series.values, "log_scale": r.log,
                        **({"x_name": x} if (x := v.unit if r.x_name == "epoch" else r.x_name) != "epoch" else {})}
                       for r in v.series],
            **({"x_unit": v.unit} if v.unit != "epoch" else {}),
            "measurements": [c.to_dict() for c in v.checks],
            "phases": v.phases,
            "notes": list(v.notes),
        })

    def _describe_thresholds(self) -> dict[str, dict[str, Any]]:
        """name → value judged by, default, the source's value and why (for the record)."""
        out = {}
        for name in self.thresholds:
            spec = self.spec.thresholds.get(name)
            out[name] = {"value": float(self.thresholds[name]), "default": spec.value if spec else None,
                         "source": spec.source if spec else None, "why": spec.why if spec else ""}
        return out



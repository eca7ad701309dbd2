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


class ClaimWarning(UserWarning):
    """A claim test that passed without recording any check or value (it judged nothing: its pass rests on plain
    asserts, or on nothing)."""


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

        Raises ``TypeError`` for a rule or a verdict of another claim, a plain function not bound to any claim
        (decorate it with ``@SPEC.rule``), a claim with no rule (or several) when none is named, or data that do not
        fit the rule's arguments (the message names them)."""
        __tracebackhide__ = True
        import inspect

        first = args[0] if args else None
        if isinstance(first, Verdict) and len(args) == 1 and not kwargs:
            verdict = first
            if verdict.claim_id not in (None, self.spec.id):
                raise TypeError(f"claim.judge got a verdict of claim {verdict.claim_id!r} in the test of claim "
                                f"{self.spec.id!r}: mark the test with that claim's spec, or build this claim's "
                                f"verdict (Verdict(), or its own rule)")
        else:
            if callable(first) and hasattr(first, "claim"):
                rule, args = first, args[1:]
                if rule.claim is not self.spec and rule.claim.id != self.spec.id:
                    raise TypeError(f"rule {rule.__qualname__} is bound to claim {rule.claim.id!r}, not to this "
                                    f"test's claim {self.spec.id!r}: mark the test @pytest.mark.claim with the spec "
                                    f"the rule is bound to, or bind the rule to this claim's spec")
            elif inspect.isfunction(first):
                raise TypeError(f"{first.__qualname__} is not bound to a claim: decorate it with @SPEC.rule "
                                f"(claimlens.ClaimSpec.rule), or build a Verdict and pass that")
            elif len(self.spec.rules) == 1:
                rule = self.spec.rules[0]
            elif not self.spec.rules:
                raise TypeError(f"claim {self.spec.id!r} has no rule bound: bind one where its spec is defined "
                                f"(@SPEC.rule above the rule's def), or build a Verdict in the test and pass that, "
                                f"claim.judge(verdict)")
            else:
                raise TypeError(f"claim {self.spec.id!r} has {len(self.spec.rules)} rules bound "
                                f"({', '.join(r.__qualname__ for r in self.spec.rules)}): name the one to call, "
                                f"claim.judge(rule, *data)")
            th = _check_arguments(rule, args, kwargs)
            from claimlens.core.series import SeriesUnavailable

            try:
                verdict = rule(*args, **kwargs, **{th: self.thresholds})
            except SeriesUnavailable as exc:
                pytest.skip(str(exc.args[0]))
        self._verdict.extend(verdict)
        if verdict.skipped:
            pytest.skip(verdict.skipped)
        unresolved = [c for c in verdict.checks if c.status == "not judged"]
        if unresolved and not verdict.judged:  # nothing could be judged: no verdict, never a pass by default
            pytest.skip("not judged: " + "; ".join(f"{c.name}: {c.reason}" for c in unresolved))
        return verdict

    def __getattr__(self, name: str):
        if name in _REMOVED:
            raise AttributeError(f"the claim fixture has no {name!r} any more: {_REMOVED[name]}")
        raise AttributeError(f"the claim fixture has no attribute {name!r}: it offers judge, note and chart "
                             f"(and thresholds, spec, id)")

    def note(self, text: str) -> None:
        """A line of text in the record (what the claim was compared with, settings used)."""
        self._verdict.note(text)

    def chart(self, series: Any, epochs: Any = None, values: Any = None, *, label: str = "", log: bool = False,
              x_name: str = "epoch") -> None:
        """A series the claim read, charted in the HTML and kept in ``claims.json``: a
        :class:`~claimlens.core.series.Series`, or ``name, epochs, values`` (sequences or 1-d tensors of the same
        length; values in the series' own unit). ``x_name``: the x axis, ``"epoch"`` (a run's checkpoints; read
        as ``"step"`` on a run trained on minibatches) or any other axis (a run set's ``"attention rate"``, a
        spectrum's ``"Fourier mode"``), whose points are charted as a scatter. ``log``: log-scale y.

        Raises ``TypeError`` for anything else (a bare list of values, say)."""
        __tracebackhide__ = True
        from claimlens.core.series import Series

        if not isinstance(series, (str, Series)):
            raise TypeError(f"claim.chart takes a Series, or a name and its x and y values: claim.chart(series) or "
                            f"claim.chart('name', epochs, values); got {type(series).__name__}")
        if isinstance(series, str):
            if epochs is None or values is None:
                raise TypeError("claim.chart(name, epochs, values): give the x values and the y values")
            if x_name == "epoch" or x_name == "step":
                series = Series.of(series, jsonable(epochs), jsonable(values))
            else:
                self._verdict.add_points(series, x_name, jsonable(epochs), jsonable(values), log=log, label=label)
                return
        self._verdict.add_series(series, label=label, log=log, x_name=x_name)

    # -- for the plugin (not a claim author's)

    def _judged_anything(self) -> bool:
        return bool(self._verdict.checks)

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


_VERDICT_NOW = "build a verdict, v = Verdict(); v.{0}(...); and hand it over, claim.judge(v) (claimlens.Verdict)"
_REMOVED = {  # the claim fixture's earlier ways of stating a check, and what replaces each
    "check": _VERDICT_NOW.format("check"),
    "record": _VERDICT_NOW.format("record"),
    "not_judged": _VERDICT_NOW.format("not_judged"),
    "require": _VERDICT_NOW.format("require"),
    "measure": _VERDICT_NOW.format("check") + " (measure's threshold and op are check's)",
    "series": "claim.chart(name, epochs, values), or claim.chart(series)",
    "phase_lines": "a rule marks phases on its verdict, v.phase_lines(phases), handed over with claim.judge(v)",
    "verdict": "a claim test hands verdicts over with claim.judge(...) and adds to the record with claim.note and "
               "claim.chart",
}


def _check_arguments(rule, args: tuple, kwargs: dict) -> str:
    """The name of ``rule``'s thresholds argument (its last positional one, ``th``), which claimlens passes by name;
    a :class:`TypeError` naming the rule's data arguments when ``args``/``kwargs`` (the data a claim test passed) do
    not fit its signature."""
    __tracebackhide__ = True
    import inspect

    target = inspect.unwrap(rule)
    signature = inspect.signature(target)
    params = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    th = params[-1].name if params else "th"
    try:
        signature.bind(*args, **kwargs, **{th: None})
        return th
    except TypeError as exc:
        data = [p.name for p in params[:-1] if p.default is p.empty]
        optional = [p.name for p in params[:-1] if p.default is not p.empty]
        raise TypeError(f"claim.judge: rule {target.__qualname__} takes {len(data)} data argument"
                        f"{'s' * (len(data) != 1)} ({', '.join(data) or 'none'}"
                        f"{'; optional: ' + ', '.join(optional) if optional else ''}) before its thresholds "
                        f"({th}, which claimlens passes); claim.judge got "
                        f"{len(args)} positional{' and ' + ', '.join(kwargs) if kwargs else ''}"
                        f"{'' if th in str(exc) else f' ({exc})'}") from None


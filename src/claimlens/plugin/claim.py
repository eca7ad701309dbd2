"""The ``claim`` fixture: the one way a claim test states its checks and records what it was judged on.

A claim test either hands over the :class:`~claimlens.core.verdicts.Verdict` of a rule::

    from claimlens.families.grokking import rules as G

    @pytest.mark.claim(G.EXCLUDED_LOSS_RISES)
    def test_excluded_loss_rises(run_series, phases, claim):
        claim.judge(G.excluded_loss_rises, run_series, phases)

or states checks itself (a claim of your own; thresholds on the marker, with the source's value)::

    @pytest.mark.claim(id="my_claim", statement="…", source="…", kind="empirical",
                       thresholds={"min_rise": Threshold(2, "the paper's wording", source=3.1)})
    def test_my_claim(run_series, claim):
        claim.check("rise of the loss (log10)", rise, ">=", claim.thresholds["min_rise"], epoch=t2)

Every check is kept, failed or not; after the test body the plugin fails the test once, listing every failed
check (``assert_close`` style), so a failed check never hides the evidence after it. A verdict that cannot be
judged on the run (``Verdict.skip``) skips the test with its reason. Everything goes into the test's record in
``claims.json``. Pure Python apart from pytest (no torch): tensors are accepted through ``tolist()``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

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
    """The ``claim`` fixture of one claim test: its spec, its thresholds (overrides applied) and its verdict."""

    def __init__(self, spec: ClaimSpec, thresholds):
        self.spec = spec
        self.thresholds = thresholds
        self.verdict = Verdict(spec.id)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.spec.kind

    # -- stating checks

    def judge(self, verdict, *args: Any, **kwargs: Any) -> Verdict:
        """Take over a rule's verdict (checks, series, phases, notes); skip the test if it could not be judged.

        ``claim.judge(rule, *args)`` calls the rule (with ``claim.thresholds`` as its last argument) and skips the
        test, with the reason, when the run lacks a series the rule reads (a curves-only run, say)."""
        if callable(verdict):
            from claimlens.core.series import SeriesUnavailable

            try:
                verdict = verdict(*args, self.thresholds, **kwargs)
            except SeriesUnavailable as exc:
                pytest.skip(str(exc.args[0]))
        self.verdict.extend(verdict)
        if verdict.skipped:
            pytest.skip(verdict.skipped)
        unresolved = [c for c in verdict.checks if c.status == "not judged"]
        if unresolved and not verdict.judged:  # nothing could be judged: no verdict, never a pass by default
            pytest.skip("not judged: " + "; ".join(f"{c.name}: {c.reason}" for c in unresolved))
        return verdict

    def check(self, name: str, value: Any, op: str, threshold: float, **where: Any) -> bool:
        """Judge ``value op threshold`` (``op`` one of >=, <=, >, <, ==); ``epoch=``, ``label=``, ``source=``."""
        return self.verdict.check(name, value, op, threshold, **where)

    def record(self, name: str, value: Any, **where: Any) -> None:
        """A value reported with the verdict, not judged."""
        self.verdict.record(name, value, **where)

    def not_judged(self, name: str, reason: str) -> None:
        self.verdict.not_judged(name, reason)

    def require(self, ok: bool, name: str, reason: str) -> bool:
        return self.verdict.require(ok, name, reason)

    # -- what the test read

    def series(self, name: str, epochs: Any, values: Any, *, label: str = "", log: bool = False) -> None:
        from claimlens.core.series import Series

        self.verdict.add_series(Series.of(name, _plain(epochs), _plain(values)), label=label, log=log)

    def phase_lines(self, phases: dict[str, Any]) -> None:
        self.verdict.phase_lines(phases)

    def note(self, text: str) -> None:
        self.verdict.note(text)

    def measure(self, name: str, value: Any, *, threshold: Any = None, op: str | None = None,
                epoch: int | None = None, label: str = "") -> bool | None:
        """The ``evidence.measure`` of earlier releases: a check when ``threshold`` and ``op`` are given, else a
        recorded value."""
        if threshold is not None and op is not None:
            return self.check(name, value, op, threshold, epoch=epoch, label=label)
        self.record(name, value, epoch=epoch, label=label)
        return None

    # -- into the record

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "series": [{"name": r.series.name, "label": r.label, "epochs": _plain(r.series.epochs),
                        "values": _plain(r.series.values), "log_scale": r.log,
                        **({"x_name": x} if (x := v.unit if r.x_name == "epoch" else r.x_name) != "epoch" else {})}
                       for r in v.series],
            **({"x_unit": v.unit} if v.unit != "epoch" else {}),
            "measurements": [_plain(c.to_dict()) for c in v.checks],
            "phases": _plain(v.phases),
            "notes": list(v.notes),
        }

    def describe_thresholds(self) -> dict[str, dict[str, Any]]:
        """name → value judged by, default, the source's value and why (for the record)."""
        out = {}
        for name in self.thresholds:
            spec = self.spec.thresholds.get(name)
            out[name] = {"value": float(self.thresholds[name]), "default": spec.value if spec else None,
                         "source": spec.source if spec else None, "why": spec.why if spec else ""}
        return out


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else (1e308 if x > 0 else -1e308)
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x

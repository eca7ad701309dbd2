"""What a pass rule is made of: thresholds with the source's own values, checks, and the verdict they add up to.

A rule is a pure function of series and scalars (no pytest, no files, no model) that returns a
:class:`Verdict`: every check it made, with the measured value, the threshold and its direction, the epoch
(or label) it was read at, and the source's own value of the same quantity where the source shows it. So the
same rule judges a trained run, an imported loss log or the digitised curves of the source's run
(``claimlens.reference``), and a claim test only fetches the data and hands the verdict over.

Kinds of claim (catalogue Revision 2): ``empirical`` (can fail on a real model), ``identity`` (holds for
every model by construction: a failure means the metric is computed wrong), ``informational`` (reports
numbers, no pass rule).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover  (no torch at import: thresholds and the plugin read this module)
    from claimlens.core.series import Series

Kind = Literal["empirical", "identity", "informational"]
KINDS = ("empirical", "identity", "informational")
KIND_NOTES = {
    "empirical": "can fail on a real model: a failure is a finding about the run",
    "identity": "holds for every model by construction; a failure means the metric is computed wrong",
    "informational": "reports numbers; no pass rule",
}
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Threshold:
    """One pass threshold: its ``value``, ``why`` (the source's wording or data it comes from), the ``source``'s
    own value of the same quantity where known (shown in reports as "source: 2.3"), and for overrides whether it
    is a count (``integer``) or must be ``positive`` (it divides, or selects at least one)."""

    value: float
    why: str
    source: float | None = None
    integer: bool = False
    positive: bool = False


class Bound(float):
    """A threshold value as a rule reads it (``th["min_rise"]``): a float that remembers its name and the
    source's own value, so that a check made with it records both."""

    key: str
    source: float | None

    def __new__(cls, value: float, key: str, source: float | None = None) -> Bound:
        obj = super().__new__(cls, value)
        obj.key, obj.source = key, source
        return obj


Status = Literal["validated", "contradicted", "unvalidated", "not_applicable"]
STATUSES: dict[str, str] = {  # catalogue Revision 3: what a rule was checked on, and what a failure then means
    "validated": "passes on the source's own data the claim is about (curves, models, tables or printed numbers): "
                 "a failure is a finding about the run",
    "contradicted": "fails on an artifact the claim is about: a failure is the expected finding, about the rule",
    "unvalidated": "no source data checks the rule: a failure may be the rule's as much as the run's",
    "not_applicable": "an identity or informational claim: nothing to validate",
}


@dataclass(frozen=True)
class Artifact:
    """One thing a claim's rule was checked on (catalogue Revision 3), of three sorts:

    * ``run``: a source artifact that ships with claimlens and is a run (``nanda2022`` curves, ``zhong2023_model_a``,
      the ``zhong2023_sweep`` tables, …). Its verdict is the claim's outcome in a session ``--run <run>``: recomputed
      by ``tests/test_validation.py`` and stored with the reference runs (:mod:`claimlens.report.references`).
    * a number (``value`` with ``threshold_name`` and ``op``): a value the source printed or one measured on its
      shipped curves (``shipped=True``), or one measured on a file that does not ship; judged against the claim's
      *current* threshold ``threshold_name`` wherever it is read, so a threshold moved past the source's own number
      shows.
    * recorded (``verdict`` given, nothing to recompute): a measurement on a file that does not ship, as the catalogue
      records it.

    ``about``: whether the claim is about this artifact (the paper's mainline run is; the author's weight-decay-0.1
    model is not): only artifacts the claim is about make it validated or contradicted. ``shipped``: a ``run`` (always),
    or a number printed by the source or read off its shipped data."""

    name: str
    run: str | None = None
    value: float | None = None
    threshold_name: str | None = None
    op: str | None = None
    shipped: bool = False
    verdict: str | None = None
    threshold: float | None = None
    about: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if self.run is not None:
            object.__setattr__(self, "shipped", True)
        if (self.threshold_name is None) != (self.op is None) or (self.op is not None and self.op not in OPS):
            raise ValueError(f"artifact {self.name!r}: a number is judged with both threshold_name and op "
                             f"(one of {tuple(OPS)})")

    def judged(self, thresholds: Mapping[str, Any]) -> dict[str, Any]:
        """This artifact as a record entry (``name``, ``shipped``, ``about``, ``verdict``, ``value``, ``threshold``,
        ``margin``: the factor by which it cleared the threshold, ≥ 1 passed), a number judged against
        ``thresholds[threshold_name]`` (a value, or a dict with ``value``)."""
        verdict, threshold = self.verdict, self.threshold
        if self.threshold_name is not None and self.value is not None and self.op is not None:
            t = thresholds.get(self.threshold_name) if thresholds else None
            t = t.get("value") if isinstance(t, Mapping) else getattr(t, "value", t)
            if _number(t):
                threshold = float(t)
                verdict = "passed" if OPS[self.op](self.value, threshold) else "failed"
        margin = None  # as the report's margins read: the factor by which it cleared its threshold (≥ 1 passed)
        op = self.op or ""
        if _number(self.value) and _number(threshold) and self.value > 0 and threshold > 0 and op in ("<=", "<", ">=", ">"):
            margin = self.value / threshold if op in (">=", ">") else threshold / self.value
        return {"name": self.name, "run": self.run, "shipped": self.shipped, "about": self.about,
                "verdict": verdict, "value": self.value, "threshold": threshold, "op": self.op,
                "threshold_name": self.threshold_name, "margin": margin, "note": self.note}


@dataclass(frozen=True)
class Validation:
    """What a claim's rule stands on (catalogue Revision 3): ``status`` (:data:`STATUSES`), ``scope`` (one sentence:
    what the claim is about, e.g. "the paper's mainline numbers only") and its ``artifacts``."""

    status: Status
    scope: str
    artifacts: tuple[Artifact, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"validation status {self.status!r} is not one of {tuple(STATUSES)}")

    @classmethod
    def of(cls, value: Validation | str | None, kind: str = "empirical") -> Validation:
        """A claim's validation from what its author wrote: a :class:`Validation`, or a sentence (a claim of the
        user's own: ``unvalidated``, or ``not_applicable`` for an identity or informational claim)."""
        if isinstance(value, Validation):
            return value
        status = "not_applicable" if kind in ("identity", "informational") else "unvalidated"
        return cls(status, str(value or ""))

    def to_dict(self, thresholds: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"status": self.status, "scope": self.scope,
                "artifacts": [a.judged(thresholds or {}) for a in self.artifacts]}

    def __str__(self) -> str:
        return f"{self.status}: {self.scope}" if self.scope else self.status


@dataclass(frozen=True)
class ClaimSpec:
    """A published claim: ``id`` (catalogue), ``statement``, ``source`` (paper, section), ``kind`` and its
    ``thresholds``. ``validation``: what the rule was checked on (a :class:`Validation`: status, scope, artifacts;
    a plain sentence makes an ``unvalidated`` one). ``min_checkpoints``: a run with fewer checkpoints cannot show the
    claim (a trajectory claim needs :data:`claimlens.core.series.MIN_TRAJECTORY_CHECKPOINTS`); it is skipped there with
    that reason, before any analysis. ``family``: the claim's family, the name of the folder under
    ``claimlens/families`` that declares it; it decides which built-in runs of a plain session judge it (the
    family's ``BUILTIN_RUNS`` and the default run); a claim of the user's own leaves it empty, and its record carries
    its claims file's name instead. ``task``: the task its runs learn (``task.kind`` of a spec:
    ``"modular_addition"``, ``"repeated_subsequence"`` or ``"any"``); a run of another task is skipped with that
    reason."""

    id: str
    statement: str
    source: str
    kind: Kind = "empirical"
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    validation: Validation | str = ""
    min_checkpoints: int = 1
    # The claim's family: the folder under claimlens/families that declares it (e.g. "pizza"), whose built-in runs
    # judge it in a plain session besides the default run; "" for a claim of the user's own (the default run only;
    # its record's family is then its claims file's name: "mine" for claims/test_mine.py).
    # A run named with --run is judged by every claim, whatever its family.
    family: str = ""
    task: str = "modular_addition"
    # The model kind its runs have ("transformer", "mlp", "attn_only" or "any"): a plain session does not put a
    # built-in run of another kind under it (a run named with --run still is, and the claim skips it with the reason).
    model: str = "any"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind {self.kind!r} is not one of {KINDS}")
        object.__setattr__(self, "validation", Validation.of(self.validation, self.kind))
        if not isinstance(self.min_checkpoints, int) or self.min_checkpoints < 1:
            raise ValueError(f"claim {self.id!r}: min_checkpoints must be a positive integer, got "
                             f"{self.min_checkpoints!r}")
        object.__setattr__(self, "_rules", [])

    def rule(self, fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
        """Bind ``fn`` as this claim's rule: the one place a rule and its spec meet. ::

            EXCLUDED_LOSS_RISES = ClaimSpec(id="excluded_loss_rises", ...)

            @EXCLUDED_LOSS_RISES.rule
            def excluded_loss_rises(s, phases, th) -> Verdict:
                v = Verdict()
                v.check(...)
                return v

        ``claim.judge(*args)`` in a test marked with this spec then calls it (the test's thresholds last). The
        verdict it returns carries this claim's id; a rule that returns another claim's verdict, or anything but a
        :class:`Verdict`, raises :class:`TypeError` (and so does ``claim.judge`` given another claim's rule or
        verdict). A claim
        judged by several rules (one per test, e.g. the two halves of a set claim) binds each; its tests name the
        one they call, ``claim.judge(rule, *args)``."""
        spec = self

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Verdict:
            verdict = fn(*args, **kwargs)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"rule {fn.__qualname__} of claim {spec.id!r} returned {type(verdict).__name__}, "
                                f"not a Verdict")
            if verdict.claim_id not in (None, spec.id):
                raise TypeError(f"rule {fn.__qualname__} is bound to claim {spec.id!r} but returned a verdict of "
                                f"{verdict.claim_id!r}")
            verdict.claim_id = spec.id
            return verdict

        bound.claim = spec  # type: ignore[attr-defined]
        bound.__test__ = False  # type: ignore[attr-defined]  (a rule named test_… is never collected as a test)
        self._rules.append(bound)  # type: ignore[attr-defined]
        return bound

    @property
    def rules(self) -> tuple[Callable[..., Verdict], ...]:
        """The rules bound to this claim with :meth:`rule`, in the order they were bound (none for a claim whose
        test states its checks itself)."""
        return tuple(self._rules)  # type: ignore[attr-defined]


@dataclass
class Check:
    """One check of a rule. ``status``: ``passed``, ``failed``, ``not judged`` (the data cannot show it; ``reason``
    says why) or ``recorded`` (a value reported without a pass rule)."""

    name: str
    value: Any
    op: str | None = None
    threshold: float | None = None
    epoch: int | None = None
    label: str = ""
    source_value: float | None = None
    threshold_name: str | None = None
    status: str = "recorded"
    reason: str = ""
    detail: str = ""  # what varies from run to run (the keys, the epochs of events): the name stays stable

    @property
    def margin(self) -> float | None:
        """``value / threshold`` (how close the verdict was: 1 is on the threshold), where both are non-zero."""
        v, t = self.value, self.threshold
        if not _number(v) or not _number(t) or t == 0 or not math.isfinite(v) or not math.isfinite(t):
            return None
        return v / t

    def describe(self, unit: str = "epoch") -> str:
        """assert_close style: what, measured, threshold, where (``unit``: what the run's checkpoints count, epochs
        or optimiser steps)."""
        where = ", ".join(x for x in (f"{unit} {self.epoch}" if self.epoch is not None else "", self.label) if x)
        where = f" ({where})" if where else ""
        name = f"{self.name} [{self.detail}]" if self.detail else self.name
        if self.status == "not judged":
            return f"{name}: not judged ({self.reason})"
        if self.value is None or self.op is None and self.status == "failed":
            return f"{name}: {self.reason or 'not reached'}{where}"
        if self.op is None:
            return f"{name}: {_fmt(self.value)}{where}"
        return f"{name}: measured {_fmt(self.value)}, threshold {self.op} {_fmt(self.threshold)}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "op": self.op,
                "epoch": self.epoch, "label": self.label,
                "passed": {"passed": True, "failed": False}.get(self.status), "status": self.status,
                "source_value": self.source_value, "threshold_name": self.threshold_name, "margin": self.margin,
                "reason": self.reason, "detail": self.detail}


@dataclass
class SeriesRecord:
    """A series a verdict was judged on, as it goes into the report. ``x_name`` is ``"epoch"`` for a series over
    a run, or the axis of a run set (``"task.frac_train"``) for :class:`Points` over the members of a set."""

    series: Any  # Series, or Points
    label: str = ""
    log: bool = False
    x_name: str = "epoch"


@dataclass(frozen=True)
class Points:
    """Values over the members of a run set: ``epochs`` holds the axis values (the report's x), ``values`` the
    measurement (``None`` where a member has none)."""

    name: str
    epochs: list[float]
    values: list[float | None]


class Verdict:
    """What a rule found: its checks (every one kept, failed or not), the series and phase lines it read, notes,
    and whether it could be judged at all (``skipped``: the reason it cannot).

    >>> v = Verdict("my_claim")
    >>> v.check("rise (log10)", 1.6, ">=", 1.0, epoch=9400)
    True
    >>> v.passed
    True
    """

    def __init__(self, claim_id: str | None = None):
        self.claim_id = claim_id
        self.checks: list[Check] = []
        self.series: list[SeriesRecord] = []
        self.phases: dict[str, Any] = {}
        self.notes: list[str] = []
        self.skipped: str | None = None
        # What the run's checkpoints count: "epoch", or "step" for a run trained on minibatches (the induction toy,
        # the hackathon's MLP). Set by the plugin from the run; checks' epochs and the series over the run read so.
        self.unit = "epoch"

    # -- checks

    def check(self, name: str, value: Any, op: str, threshold: float, *, epoch: int | None = None,
              label: str = "", source: float | None = None, missing: str = "", detail: str = "",
              best: Any = None, best_threshold: float | None = None, resolution: str = "") -> bool:
        """Judge ``value op threshold`` and keep the check. A ``value`` of None (an event that never happened)
        fails, with ``missing`` as the reason. ``source`` defaults to the threshold's own (a :class:`Bound`).

        Resolution (what the checkpoints can tell): ``best`` is the most favourable value the checkpoints leave
        possible (an event placed anywhere in the gap before the checkpoint that saw it, a value at the checkpoint
        before a boundary), judged against ``best_threshold`` (default ``threshold``: a threshold may add a margin
        for the spacing itself). A check that fails on ``value`` but would pass on ``best`` is *not judged* —
        ``resolution`` says what spacing it needed — never failed by the spacing alone."""
        if op not in OPS:
            raise ValueError(f"check {name!r}: op {op!r} is not one of {sorted(OPS)}")
        if source is None:
            source = getattr(threshold, "source", None)
        value = _plain(value)
        ok = _holds(value, op, threshold)
        status, reason = "passed" if ok else "failed", "" if value is not None else (missing or "not reached")
        if not ok and best is not None and _holds(_plain(best), op, threshold if best_threshold is None
                                                 else best_threshold):
            status = "not judged"
            reason = (f"resolution: measured {_fmt(value)} against {op} {_fmt(threshold)}, but the checkpoints allow "
                      f"{_fmt(_plain(best))}" + (f"; {resolution}" if resolution else ""))
        self.checks.append(Check(name, value, op, float(threshold), epoch, label, source,
                                 getattr(threshold, "key", None), status, reason, detail))
        return ok

    @property
    def judged(self) -> bool:
        """Whether any check was judged (passed or failed): a verdict whose every check is *not judged* says
        nothing, and is skipped rather than passed."""
        return any(c.status in ("passed", "failed") for c in self.checks)

    def require(self, ok: bool, name: str, reason: str, *, detail: str = "") -> bool:
        """A condition without a number (an event happened, an epoch lies in a window); fails with ``reason``."""
        self.checks.append(Check(name, None if not ok else True, status="passed" if ok else "failed",
                                 reason="" if ok else reason, detail=detail))
        return ok

    def record(self, name: str, value: Any, *, epoch: int | None = None, label: str = "",
               source: float | None = None, detail: str = "") -> None:
        """A value reported with the verdict, not judged."""
        self.checks.append(Check(name, _plain(value), epoch=epoch, label=label, source_value=source, detail=detail))

    def not_judged(self, name: str, reason: str) -> None:
        """A part of the rule the data cannot show (e.g. it needs weights); the verdict rests on the other parts."""
        self.checks.append(Check(name, None, status="not judged", reason=reason))

    def skip(self, reason: str) -> Verdict:
        """The rule cannot be judged on this data at all (the claim is skipped with ``reason``)."""
        self.skipped = reason
        return self

    # -- what it read

    def add_series(self, s: Series, *, log: bool = False, label: str = "", x_name: str = "epoch") -> Series:
        """A series the verdict read, charted over its epochs (``x_name = "step"`` for a run whose epochs are
        optimiser steps on minibatches, as the induction toy's). Raises ``TypeError`` for anything that is not a
        series (a list of values, say: :meth:`claimlens.core.series.Series.of` makes one)."""
        if not all(hasattr(s, a) for a in ("name", "epochs", "values")):
            raise TypeError(f"Verdict.add_series takes a claimlens.Series (Series.of(name, epochs, values)); got "
                            f"{type(s).__name__}")
        self.series.append(SeriesRecord(s, label, log, x_name))
        return s

    def add_points(self, name: str, x_name: str, xs: list[float], ys: list[float | None], *, log: bool = False,
                   label: str = "") -> Points:
        """A measurement over the members of a run set, charted against the set's axis ``x_name``."""
        points = Points(name, [float(x) for x in xs], [None if y is None else float(y) for y in ys])
        self.series.append(SeriesRecord(points, label, log, x_name))
        return points

    def phase_lines(self, phases: Mapping[str, Any]) -> None:
        self.phases.update({k: v for k, v in phases.items() if v is not None})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def extend(self, other: Verdict) -> Verdict:
        """Add the checks, series, phases and notes of another verdict (a sub-rule) to this one."""
        self.checks += other.checks
        self.series += other.series
        self.phases.update(other.phases)
        self.notes += other.notes
        self.skipped = self.skipped or other.skipped
        return self

    # -- outcome

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def passed(self) -> bool:
        return self.skipped is None and not self.failures

    def failure_message(self) -> str:
        """Every failed check, one per line, in the style of ``torch.testing.assert_close``."""
        failed = self.failures
        judged = [c for c in self.checks if c.status in ("passed", "failed")]
        if len(failed) == 1:
            return failed[0].describe(self.unit)
        return f"{len(failed)} of {len(judged)} checks failed:\n" + "\n".join(f"  {c.describe(self.unit)}"
                                                                            for c in failed)


def _holds(value: Any, op: str, threshold: float) -> bool:
    return value is not None and _number(value) and not math.isnan(value) and bool(OPS[op](value, threshold))


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _plain(x: Any) -> Any:
    """Python numbers from tensors and numpy scalars; lists stay lists."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, tuple):
        x = list(x)
    return x


def _fmt(x: Any) -> str:
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return f"{x:.4g}" if _number(x) else repr(x)

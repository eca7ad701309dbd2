"""The per-epoch series type and temporal helpers (epochs are always data, never list positions).

The helpers answer the questions rules ask of a curve — when does it first cross a threshold, is it
monotone over a window, where does it peak, by how much must one event lead another. Rules judge with
them and state their checks in a :class:`claimlens.core.verdicts.Verdict`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Direction = Literal["above", "below"]


class SeriesUnavailable(KeyError):
    """A run does not have a series a rule reads (e.g. a curves-only run without attention patterns)."""


@dataclass(frozen=True, eq=False)
class Series:
    """One measure over the epochs of a run: ``data[r, i]`` is row ``labels[r]`` measured at ``epochs[i]``.

    The one per-epoch type of claimlens, used by the analyses, the claims, the rules and the report alike.
    Most series have one unlabelled row (a loss, a Gini coefficient); some have a row per frequency
    (``"k=14"``), head (``"head=0,pos=2"``) or parameter. ``values`` is the row of a one-row series;
    ``row(label)`` picks one row of a labelled series as a one-row series named ``name[label]``.
    The temporal helpers (``first_crossing``, ``window``, ``at``, …) read ``values``.

    Shapes: ``epochs [n_epochs]`` int64, strictly increasing; ``data [n_rows, n_epochs]`` float64 (a 1-D
    ``data`` is taken as one row); ``labels`` one string per row.
    """

    name: str
    epochs: torch.Tensor  # [n_epochs] int64
    data: torch.Tensor  # [n_rows, n_epochs] float64
    labels: tuple[str, ...] = ("",)

    def __post_init__(self) -> None:
        data = self.data.unsqueeze(0) if self.data.dim() == 1 else self.data
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.epochs.dim() != 1 or data.dim() != 2 or data.shape[1] != self.epochs.numel():
            raise ValueError(f"series {self.name!r}: epochs {list(self.epochs.shape)} and values "
                             f"{list(data.shape)} must be [n_epochs] and [n_rows, n_epochs]")
        if len(self.labels) != data.shape[0]:
            raise ValueError(f"series {self.name!r}: {data.shape[0]} rows but {len(self.labels)} labels")
        if self.epochs.numel() > 1 and not bool((self.epochs[1:] > self.epochs[:-1]).all()):
            raise ValueError(f"series {self.name!r}: epochs must be strictly increasing")

    @classmethod
    def of(cls, name: str, epochs: Sequence[int] | torch.Tensor, values: Sequence[float] | torch.Tensor,
           labels: Sequence[str] = ("",)) -> Series:
        return cls(name, torch.as_tensor(epochs, dtype=torch.int64), torch.as_tensor(values, dtype=torch.float64),
                   tuple(labels))

    @property
    def values(self) -> torch.Tensor:
        """``[n_epochs]``: the values of a one-row series (a labelled series: pick a row first)."""
        if self.data.shape[0] != 1:
            raise ValueError(f"series {self.name!r} has {self.data.shape[0]} rows ({list(self.labels[:6])}…); "
                             f"pick one with .row(label)")
        return self.data[0]

    def row(self, label: str = "") -> Series:
        """Row ``label`` as a one-row series named ``name[label]`` (``name`` for the unlabelled row)."""
        try:
            i = self.labels.index(label)
        except ValueError:
            raise KeyError(f"series {self.name!r} has no label {label!r}; labels: {list(self.labels[:8])}") from None
        return Series(f"{self.name}[{label}]" if label else self.name, self.epochs, self.data[i:i + 1])

    def __len__(self) -> int:
        return self.epochs.numel()

    def at_epochs(self, epochs: Sequence[int]) -> Series:
        """The columns at ``epochs`` (those the series has; e.g. a per-epoch log read at a run's checkpoints)."""
        keep = torch.isin(self.epochs, torch.as_tensor(list(epochs), dtype=torch.int64))
        return Series(self.name, self.epochs[keep], self.data[:, keep], self.labels)

    def finite(self) -> Series:
        """The epochs at which every row is finite (a log that measures some columns only at checkpoints)."""
        keep = torch.isfinite(self.data).all(0)
        return Series(self.name, self.epochs[keep], self.data[:, keep], self.labels)

    def first_crossing(self, threshold: float, direction: Direction = "above", *, after: int | None = None) -> int | None:
        """First epoch (``≥ after`` if given) whose value is ≥ ``threshold`` (``above``) or ≤ it (``below``)."""
        hit = self.values >= threshold if direction == "above" else self.values <= threshold
        if after is not None:
            hit &= self.epochs >= after
        idx = torch.nonzero(hit).flatten()
        return int(self.epochs[idx[0]]) if idx.numel() else None

    def before(self, epoch: int) -> int | None:
        """The checkpoint epoch before ``epoch`` (None at or before the first): an event first seen at ``epoch``
        happened somewhere in ``(before, epoch]``."""
        earlier = self.epochs[self.epochs < epoch]
        return int(earlier[-1]) if earlier.numel() else None

    def window(self, start: int | None = None, end: int | None = None) -> Series:
        """The part with ``start ≤ epoch ≤ end`` (either bound optional)."""
        keep = torch.ones_like(self.epochs, dtype=torch.bool)
        if start is not None:
            keep &= self.epochs >= start
        if end is not None:
            keep &= self.epochs <= end
        return Series(self.name, self.epochs[keep], self.data[:, keep], self.labels)

    def at(self, epoch: int) -> float:
        """Value at the last checkpoint at or before ``epoch``."""
        idx = torch.nonzero(self.epochs <= epoch).flatten()
        if not idx.numel():
            raise KeyError(f"series {self.name!r} starts at epoch {int(self.epochs[0])}, after {epoch}")
        return float(self.values[idx[-1]])

    def argmax(self) -> tuple[int, float]:
        i = int(self.values.argmax())
        return int(self.epochs[i]), float(self.values[i])

    def argmin(self) -> tuple[int, float]:
        i = int(self.values.argmin())
        return int(self.epochs[i]), float(self.values[i])

    def monotone_violations(self, direction: Literal["increasing", "decreasing"], rel_tol: float = 0.0
                            ) -> list[tuple[int, float]]:
        """Steps that go the wrong way by more than ``rel_tol`` of the previous value: ``(epoch, relative step)``."""
        prev, cur = self.values[:-1], self.values[1:]
        step = (cur - prev) / prev.abs().clamp_min(1e-300)
        bad = step < -rel_tol if direction == "increasing" else step > rel_tol
        return [(int(e), float(s)) for e, s in zip(self.epochs[1:][bad], step[bad])]


# ----------------------------------------------------------------------------- leads between events


def checkpoint_gap(epochs: Sequence[int] | torch.Tensor, epoch: int) -> int:
    """Epochs between checkpoint ``epoch`` and the one before it: how late a first crossing at ``epoch`` may be."""
    e = [int(x) for x in (epochs.tolist() if isinstance(epochs, torch.Tensor) else epochs)]
    if epoch not in e:
        raise ValueError(f"epoch {epoch} is not a checkpoint of this run")
    i = e.index(epoch)
    return e[i] - e[i - 1] if i > 0 else (e[1] - e[0] if len(e) > 1 else 0)


def lead_margin(epochs: Sequence[int] | torch.Tensor, first: int, second: int, *, fraction: float,
                min_checkpoints: int) -> int:
    """The lead by which event ``first`` must precede event ``second`` (both checkpoint epochs).

    ``fraction`` of the later event's epoch, so the rule scales with the run's time-scale; and at least
    ``min_checkpoints`` checkpoint gaps (the larger gap before either event), so the lead is more than what the
    checkpoint spacing alone could produce. Read from the run's own epochs: never from a spec's nominal spacing,
    which an imported run may not have.
    """
    resolution = max(checkpoint_gap(epochs, first), checkpoint_gap(epochs, second))
    return max(math.ceil(fraction * second), min_checkpoints * resolution)


# ----------------------------------------------------------------------------- phases

# A trajectory claim locates events (t1, t2, t3, a peak, a crossing) between checkpoints and compares values across
# them. Below this many checkpoints the phases cannot be located (ours: the floor the grokking rule already used
# for the training log; the built-in runs have 101–126 checkpoints, the source's digitised curves 100 points).
MIN_TRAJECTORY_CHECKPOINTS = 10


@dataclass(frozen=True)
class Phases:
    """Phase boundaries by the catalogue's shape-mode rules (claims_catalogue §3):

    ``t1`` memorisation end: argmin of the full excluded loss over checkpoints before grokking
    (before test accuracy first reaches ``grok_acc``); ``t2`` circuit-formation end: first checkpoint
    after ``t1`` whose test loss is 10× below its maximum after ``t1``; ``t3`` cleanup end: first
    checkpoint after ``t2`` whose test loss is within 2× of its final value. ``None`` where not reached.
    ``unresolved``: why no phase can be located at all (the ``phases`` fixture's verdict on a run with fewer than
    :data:`MIN_TRAJECTORY_CHECKPOINTS` checkpoints), else ``None``.
    """

    t1: int | None
    t2: int | None
    t3: int | None
    grok_epoch: int | None
    unresolved: str | None = None
    epochs: tuple[int, ...] = ()  # the checkpoints they were located on (what the boundaries can resolve)

    def before(self, epoch: int) -> int | None:
        """The checkpoint before ``epoch`` (None at the first, or when the checkpoints are not known): a boundary
        first seen at ``epoch`` lies in ``(before, epoch]``."""
        earlier = [e for e in self.epochs if e < epoch]
        return earlier[-1] if earlier else None

    def coinciding(self, *names: str) -> tuple[str, str, int] | None:
        """The first two of ``names`` (boundaries in phase order, each reached) that fall on the same checkpoint:
        the phase between them has no checkpoint, so the checkpoints do not resolve it. None when all differ."""
        order = [n for n in ("t1", "t2", "t3") if n in names and getattr(self, n) is not None]
        for a, b in itertools.pairwise(order):
            if getattr(self, a) == getattr(self, b):
                return a, b, getattr(self, a)
        return None

    def as_dict(self) -> dict[str, int | None]:
        return {"t1": self.t1, "t2": self.t2, "t3": self.t3, "grok_epoch": self.grok_epoch}


def detect_phases(excluded_full: Series, test_loss: Series, test_acc: Series, *, grok_acc: float = 0.95) -> Phases:
    grok = test_acc.first_crossing(grok_acc)
    before = excluded_full.window(end=grok) if grok is not None else excluded_full
    t1 = before.argmin()[0] if len(before) else None
    epochs = tuple(sorted(set(excluded_full.epochs.tolist()) | set(test_loss.epochs.tolist())))
    if t1 is None:
        return Phases(None, None, None, grok, epochs=epochs)
    after = test_loss.window(start=t1)
    peak = after.argmax()[1]
    t2 = after.first_crossing(peak / 10, "below")
    t3 = None
    if t2 is not None:
        t3 = test_loss.window(start=t2).first_crossing(2 * float(test_loss.values[-1]), "below")
    return Phases(t1, t2, t3, grok, epochs=epochs)


# ----------------------------------------------------------------------------- grokking summary


@dataclass(frozen=True)
class GrokkingSummary:
    """When a run memorised and when it generalised, by accuracy thresholds on the training log."""

    memorised_epoch: int | None  # first epoch with train accuracy ≥ threshold
    generalised_epoch: int | None  # first epoch with test accuracy ≥ threshold
    threshold: float

    @property
    def delay_ratio(self) -> float | None:
        """``generalised / memorised`` epoch (the 'delay' of grokking); None if either is missing."""
        if self.memorised_epoch is None or self.generalised_epoch is None:
            return None
        return self.generalised_epoch / max(self.memorised_epoch, 1)


def grokking_summary(epochs, train_acc, test_acc, threshold: float = 0.99) -> GrokkingSummary:
    return GrokkingSummary(
        Series.of("train_acc", epochs, train_acc).first_crossing(threshold),
        Series.of("test_acc", epochs, test_acc).first_crossing(threshold),
        threshold,
    )


def spearman(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks (ties get their average rank)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.shape != y.shape or x.dim() != 1 or x.numel() < 2:
        raise ValueError(f"spearman needs two 1-D series of equal length ≥ 2, got {list(x.shape)} and {list(y.shape)}")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denom if denom > 0 else float("nan")


def _ranks(v: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(v.numel(), dtype=torch.float64)
    for value in torch.unique(v):  # average rank within ties
        tied = v == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


# ----------------------------------------------------------------------------- a sudden drop of a loss curve
# (catalogue §3.6: the induction phase change; also where the low-rank claims look for a turn)

SMOOTH_STEPS = 50  # "loss per step (smoothed over 50 steps)"


@dataclass(frozen=True)
class DropWindow:
    """Where the smoothed loss fell (catalogue §3.6: "the steps during which the smoothed loss goes from 90% to 10% of
    the way between its plateau level and its final level", heights measured up from the final level):
    ``onset`` is the last step before the steepest fall at which it was still at ≥ 90% of the height, ``end``
    the first step after it at ≤ 10% (None: it never got that low); ``steepest`` the step of its steepest fall.
    The plateau is measured on the steps up to half the steepest fall's step (our reading of "in its first
    half")."""

    plateau: float
    final: float
    steepest: int
    onset: int | None
    end: int | None
    smoothed: Series

    @property
    def length(self) -> int | None:
        return None if self.onset is None or self.end is None else self.end - self.onset


def smooth(loss: Series, steps: int = SMOOTH_STEPS) -> Series:
    """The centred running mean of ``loss`` over ``steps`` consecutive logged steps (only where the whole window
    lies inside the series)."""
    v = loss.values
    if len(v) < steps:
        raise ValueError(f"{loss.name!r} has {len(v)} points; smoothing needs ≥ {steps}")
    kernel = torch.ones(steps, dtype=torch.float64) / steps
    sm = torch.nn.functional.conv1d(v.view(1, 1, -1), kernel.view(1, 1, -1)).flatten()
    lo = (steps - 1) // 2
    return Series(f"{loss.name} (mean over {steps} steps)", loss.epochs[lo:lo + len(sm)], sm)


def drop_window(loss: Series, steps: int = SMOOTH_STEPS) -> DropWindow | str:
    """The drop window of catalogue §3.6 on a per-step ``loss``, or why there is none (a string). Plateau: the median
    of the smoothed loss over the steps after the first ``steps`` and before half the step of the steepest fall;
    final: the median over the last 10% of steps."""
    sm = smooth(loss, steps)
    e, v = sm.epochs, sm.values
    slope = v.diff()
    steepest = int(e[int(slope.argmin()) + 1])
    first = int(loss.epochs[0]) + steps
    early = (e >= first) & (e <= steepest / 2)
    if not bool(early.any()):
        return (f"the smoothed loss falls fastest at step {steepest}, before any plateau could form (the plateau is "
                f"measured on the steps from {first} to half the step of the steepest fall)")
    plateau = float(v[early].median())
    last = int(loss.epochs[-1])
    tail = e >= last - 0.1 * (last - int(loss.epochs[0]))
    final = float(v[tail].median())
    if not final < plateau:
        return f"the loss did not fall: final level {final:.3g} ≥ plateau level {plateau:.3g}"
    high, low = final + 0.9 * (plateau - final), final + 0.1 * (plateau - final)
    before = (e <= steepest) & (v >= high)
    onset = int(e[before.nonzero().max()]) if bool(before.any()) else int(e[0])
    after = (e >= steepest) & (v <= low)
    end = int(e[after.nonzero().min()]) if bool(after.any()) else None
    return DropWindow(plateau, final, steepest, onset, end, sm)

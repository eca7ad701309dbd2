"""Per-epoch series and temporal helpers (epochs are always data, never list positions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch


@dataclass(frozen=True)
class Series:
    """A named per-epoch series: ``values[i]`` was measured at ``epochs[i]`` (strictly increasing)."""

    name: str
    epochs: torch.Tensor  # [n] int64
    values: torch.Tensor  # [n] float64

    def __post_init__(self) -> None:
        if self.epochs.shape != self.values.shape or self.epochs.dim() != 1:
            raise ValueError(f"series {self.name!r}: epochs {list(self.epochs.shape)} and values "
                             f"{list(self.values.shape)} must be 1-D of equal length")
        if self.epochs.numel() > 1 and not bool((self.epochs[1:] > self.epochs[:-1]).all()):
            raise ValueError(f"series {self.name!r}: epochs must be strictly increasing")

    @classmethod
    def of(cls, name: str, epochs: Sequence[int] | torch.Tensor, values: Sequence[float] | torch.Tensor) -> "Series":
        return cls(name, torch.as_tensor(epochs, dtype=torch.int64), torch.as_tensor(values, dtype=torch.float64))

    def first_crossing(self, threshold: float, direction: Literal["above", "below"] = "above") -> int | None:
        """First epoch whose value is ≥ ``threshold`` (``above``) or ≤ it (``below``); None if never."""
        hit = self.values >= threshold if direction == "above" else self.values <= threshold
        idx = torch.nonzero(hit).flatten()
        return int(self.epochs[idx[0]]) if idx.numel() else None


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

"""Sampling of a run's checkpoints: which stored epochs an analysis that cannot afford every checkpoint reads
(the learning coefficient, the pizza-or-clock measures)."""

from __future__ import annotations

import torch


def sampled_epochs(run, max_checkpoints: int) -> list[int]:
    """Up to ``max_checkpoints`` stored epochs, evenly spread by index, first and last included."""
    epochs = run.epochs
    if len(epochs) <= max_checkpoints:
        return list(epochs)
    idx = torch.linspace(0, len(epochs) - 1, max_checkpoints).round().long().unique()
    return [epochs[int(i)] for i in idx]

"""Modular addition mod ``p``: the input grid and its train/test split.

Worked example for ``p = 5``: row ``a·p + b`` of the grid is the sequence ``[a, b, =]`` with the
``=`` token id ``p``; row 13 is ``a = 2, b = 3`` → tokens ``[2, 3, 5]``, label ``(2 + 3) mod 5 = 0``.
No model, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from claimlens.config import TaskConfig


def grid_tokens(p: int) -> torch.Tensor:
    """All ``p²`` input sequences ``[a, b, =]``, ``a`` outer and ``b`` inner: shape ``[p², 3]``, int64."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return torch.stack([a, b, torch.full_like(a, p)], dim=1)


def grid_labels(p: int) -> torch.Tensor:
    """``(a + b) mod p`` for every grid row: shape ``[p²]``, int64."""
    tokens = grid_tokens(p)
    return (tokens[:, 0] + tokens[:, 1]) % p


def nanda_split(p: int, frac_train: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test row indices by the rule of Nanda et al.'s code.

    The list of all pairs is shuffled with Python's ``random`` seeded by ``seed`` and the first
    ``int(frac_train · p²)`` pairs are the training set. Shuffling row indices gives the same
    permutation as shuffling the pairs themselves. Indices are returned in shuffled order.
    """
    order = list(range(p * p))
    random.Random(seed).shuffle(order)
    n_train = int(frac_train * p * p)
    return torch.tensor(order[:n_train], dtype=torch.int64), torch.tensor(order[n_train:], dtype=torch.int64)


@dataclass(frozen=True)
class ModularAddition:
    """The task of one run: grid, labels and split (the split is stored with the run)."""

    p: int
    train_idx: torch.Tensor
    test_idx: torch.Tensor

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> ModularAddition:
        train_idx, test_idx = nanda_split(cfg.p, cfg.frac_train, cfg.split_seed)
        return cls(cfg.p, train_idx, test_idx)

    @property
    def tokens(self) -> torch.Tensor:
        return grid_tokens(self.p)

    @property
    def labels(self) -> torch.Tensor:
        return grid_labels(self.p)

    def check(self) -> None:
        """The split must partition the ``p²`` grid rows."""
        n = self.p * self.p
        both = torch.cat([self.train_idx, self.test_idx])
        if both.numel() != n or not torch.equal(torch.sort(both).values, torch.arange(n)):
            raise ValueError(
                f"train/test split must partition the {n} grid rows of p={self.p}; got "
                f"{self.train_idx.numel()} train + {self.test_idx.numel()} test indices "
                f"({torch.unique(both).numel()} distinct)"
            )

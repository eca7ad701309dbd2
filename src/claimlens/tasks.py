"""The tasks: modular addition mod ``p`` (its input grid and train/test split) and the repeated-subsequence
task of the induction toy (:class:`RepeatedSubsequence`).

Worked example for ``p = 5``: row ``a·p + b`` of the grid is the sequence ``[a, b, =]`` with the
``=`` token id ``p``; row 13 is ``a = 2, b = 3`` → tokens ``[2, 3, 5]``, label ``(2 + 3) mod 5 = 0``.
No model, no I/O.
"""

from __future__ import annotations

import functools
import hashlib
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


class ModularAddition:
    """The task of one run: grid, labels and split (the split is stored with the run).

    The split may be *unknown* (``split_unknown`` holds the reason): the source saved none and no rule rebuilds it
    (the Clock/Pizza release, DESIGN.md "Task grid"). Then :attr:`train_idx` and :attr:`test_idx` raise
    :class:`~claimlens.errors.SplitUnknown`, which the plugin turns into a skip with that reason: every measure
    that needs train vs test is refused, never computed on a made-up split; measures on all ``p²`` pairs work.
    """

    __slots__ = ("_test", "_train", "p", "split_unknown")

    def __init__(self, p: int, train_idx: torch.Tensor | None = None, test_idx: torch.Tensor | None = None, *,
                 split_unknown: str | None = None):
        if (train_idx is None or test_idx is None) and not split_unknown:
            raise ValueError("ModularAddition needs train_idx and test_idx, or split_unknown= the reason")
        self.p, self._train, self._test = p, train_idx, test_idx
        self.split_unknown = split_unknown or None

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> ModularAddition:
        train_idx, test_idx = nanda_split(cfg.p, cfg.frac_train, cfg.split_seed)
        return cls(cfg.p, train_idx, test_idx)

    @property
    def split_known(self) -> bool:
        return self.split_unknown is None

    def require_split(self, what: str) -> None:
        """Raise :class:`~claimlens.errors.SplitUnknown` naming ``what`` needs the split, if it is unknown."""
        if self.split_unknown is not None:
            from claimlens.errors import SplitUnknown

            raise SplitUnknown(f"{what} needs the run's train/test split, which is unknown: {self.split_unknown}")

    @property
    def train_idx(self) -> torch.Tensor:
        """``[n_train]`` int64 grid rows of the training set. Raises :class:`SplitUnknown` when unknown."""
        self.require_split("the training set")
        return self._train

    @property
    def test_idx(self) -> torch.Tensor:
        """``[n_test]`` int64 grid rows of the test set. Raises :class:`SplitUnknown` when unknown."""
        self.require_split("the test set")
        return self._test

    @property
    def tokens(self) -> torch.Tensor:
        return grid_tokens(self.p)

    @property
    def labels(self) -> torch.Tensor:
        return grid_labels(self.p)

    def split_record(self) -> dict:
        if self.split_unknown is not None:
            return {"rule": "unknown", "reason": self.split_unknown}
        return {"train": self._train.tolist(), "test": self._test.tolist()}

    def check(self) -> None:
        """The split must partition the ``p²`` grid rows (nothing to check when it is unknown)."""
        if self.split_unknown is not None:
            return
        n = self.p * self.p
        both = torch.cat([self._train, self._test])
        if both.numel() != n or not torch.equal(torch.sort(both).values, torch.arange(n)):
            raise ValueError(
                f"train/test split must partition the {n} grid rows of p={self.p}; got "
                f"{self._train.numel()} train + {self._test.numel()} test indices "
                f"({torch.unique(both).numel()} distinct)"
            )


# ----------------------------------------------------------------------------- the induction toy


@dataclass(frozen=True)
class SequenceBatch:
    """Sequences of the repeated-subsequence task.

    ``tokens [batch, seq_len]`` int64; ``starts [batch, n_repeats]`` int64, the position of each repeat's first
    token (increasing). Position ``t`` of the model's output predicts ``tokens[:, t + 1]``.
    """

    tokens: torch.Tensor
    starts: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def index(self, rows: torch.Tensor) -> SequenceBatch:
        return SequenceBatch(self.tokens[rows], self.starts[rows])


@dataclass(frozen=True)
class RepeatedSubsequence:
    """The induction toy of claims_catalogue §3.6: ``seq_len`` tokens over ``d_vocab`` holding one random
    subsequence of ``repeat_len`` tokens ``n_repeats`` times.

    Choices the source leaves open, made here (claims_catalogue Revision 3, "Induction"):

    * **Layout.** Every token is uniform over the vocabulary. The number of random tokens between consecutive
      repeats (a *gap*) is uniform in ``0 … max_gap``, each gap drawn on its own; a gap of 0 puts a repeat right
      after the previous one (with the defaults, ``max_gap = 18``, one gap in 19 is 0 and about one sequence in
      ten has a repeat right after another). The first repeat then starts uniformly among the positions that leave
      room for the rest; the tokens after the last repeat fill up to ``seq_len``. The distance between the starts
      of consecutive repeats is ``repeat_len + gap``, uniform over ``max_gap + 1`` values (16 … 34 with the
      defaults): no fixed offset lands on a repeat's counterpart in more than ``1 / (max_gap + 1)`` of the cases,
      so only content-based induction predicts the repeats. (The first layout, ``max_gap = -1``, put at least one
      random token before each later repeat in a fixed-length sequence; it admitted a *shifted* circuit, layer 0
      attending ``repeat_len`` or ``repeat_len + 1`` back, that the offset-1 induction score does not see. It is
      kept only so that runs trained on it are measured on their own layout.)
    * **Scored positions.** The loss is the mean cross entropy of the predictions of every token of repeats
      ``2 … n_repeats`` (the output at the position before each). The first token of a later repeat is
      unpredictable unless the token before it also followed a previous occurrence of itself (repeat 3 right
      after repeat 2 while repeat 2 came right after repeat 1), so the floor of the loss is a little below
      ``ln(d_vocab) / repeat_len`` (0.303 nats for 128 and 16; the source's final loss is 0.30 at 5 000 steps).

    Data are seeded, never drawn from the global RNG: fresh training batches by ``(seed, step)``; the finite
    training set (``n_sequences > 0``), the held-out set and the probe batch each from their own stream of the
    task's ``split_seed`` (:func:`_stream`), which no training batch's seed can equal.
    """

    d_vocab: int = 128
    seq_len: int = 85
    repeat_len: int = 16
    n_repeats: int = 3
    n_sequences: int = 0
    split_seed: int = 0

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> RepeatedSubsequence:
        return cls(cfg.d_vocab, cfg.seq_len, cfg.repeat_len, cfg.n_repeats, cfg.n_sequences, cfg.split_seed,
                   cfg.max_gap)

    max_gap: int | None = None

    def __post_init__(self) -> None:
        if self.max_gap is None:  # the largest that fits (RepeatedSubsequenceTask.max_gap)
            fit = (self.seq_len - self.n_repeats * self.repeat_len) // max(self.n_repeats - 1, 1)
            object.__setattr__(self, "max_gap", max(fit, 0))

    def sample(self, n: int, generator: torch.Generator) -> SequenceBatch:
        """``n`` sequences drawn from ``generator`` (deterministic given its state): ``tokens [n, seq_len]`` and
        ``starts [n, n_repeats]``, the first position of each repeat (increasing, the repeats never overlap)."""
        R, K = self.repeat_len, self.n_repeats
        tokens = torch.randint(self.d_vocab, (n, self.seq_len), generator=generator)
        repeat = torch.randint(self.d_vocab, (n, R), generator=generator)
        if self.max_gap == -1:
            starts = self._first_layout_starts(n, generator)
        else:
            gaps = torch.randint(self.max_gap + 1, (n, K - 1), generator=generator)  # each uniform in 0 … max_gap
            room = self.seq_len - K * R - gaps.sum(1)  # ≥ 0: (K − 1)·max_gap ≤ seq_len − K·R
            first = (torch.rand(n, generator=generator, dtype=torch.float64) * (room + 1)).floor().long()
            first = torch.minimum(first, room)  # uniform in 0 … room
            step = torch.cat([torch.zeros(n, 1, dtype=torch.long), gaps + R], dim=1)
            starts = first[:, None] + step.cumsum(1)  # [n, K]
        positions = (starts.unsqueeze(-1) + torch.arange(R)).flatten(1)  # [n, K·R]
        tokens.scatter_(1, positions, repeat.repeat(1, K))
        return SequenceBatch(tokens, starts)

    def _first_layout_starts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The first layout (``max_gap = -1``): the ``seq_len − n_repeats·repeat_len`` other tokens form
        ``n_repeats + 1`` gaps uniform over all compositions with every inner gap ≥ 1 (stars and bars)."""
        R, K = self.repeat_len, self.n_repeats
        free = self.seq_len - K * R - (K - 1)
        cuts = torch.rand(n, free + K, generator=generator).argsort(-1)[:, :K].sort(-1).values  # K bars
        bounds = torch.cat([torch.full((n, 1), -1), cuts, torch.full((n, 1), free + K)], dim=1)
        gaps = bounds.diff(dim=1) - 1  # [n, K + 1], each ≥ 0, summing to free
        gaps[:, 1:K] += 1
        return gaps[:, :K].cumsum(1) + R * torch.arange(K)  # [n, K]

    def train_batch(self, seed: int, step: int, batch_size: int) -> SequenceBatch:
        """The training batch of ``step``: fresh sequences, or rows of the finite training set drawn with
        replacement; seeded by ``(seed, step)`` alone, so a resumed run sees the batches it would have seen."""
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        if self.n_sequences == 0:
            return self.sample(batch_size, gen)
        return self.train_set().index(torch.randint(self.n_sequences, (batch_size,), generator=gen))

    def train_set(self) -> SequenceBatch:
        """The finite training set (``n_sequences > 0``; drawn once per task and kept)."""
        if self.n_sequences == 0:
            raise ValueError("this task draws fresh sequences at every step; it has no finite training set")
        return _train_set(self)

    def held_out(self, n: int = 512) -> SequenceBatch:
        """``n`` sequences never trained on (their own stream): the test loss."""
        return self.sample(n, _stream("held_out", self.split_seed))

    def probe(self, n: int = 64) -> SequenceBatch:
        """The fixed probe batch on which attention scores are measured at every checkpoint."""
        return self.sample(n, _stream("probe", self.split_seed))

    def scored(self, batch: SequenceBatch) -> torch.Tensor:
        """``[batch, seq_len − 1]`` bool: which output positions are scored (they predict a token of a later repeat)."""
        n = len(batch)
        targets = torch.zeros(n, self.seq_len, dtype=torch.bool)
        positions = (batch.starts[:, 1:].unsqueeze(-1) + torch.arange(self.repeat_len)).flatten(1)
        targets.scatter_(1, positions, True)
        return targets[:, 1:]

    def split_record(self) -> dict:
        """What the run manifest stores as the split: the data are generated, so only how."""
        return {"rule": "fresh" if self.n_sequences == 0 else "finite", "train": [], "test": [],
                "n_sequences": self.n_sequences, "split_seed": self.split_seed}

    def check(self) -> None:
        pass

    split_known = True  # generated data: nothing to know
    split_unknown = None

    def require_split(self, what: str) -> None:
        pass


def _stream(purpose: str, seed: int) -> torch.Generator:
    """A generator for one purpose of a task (``"train_set"``, ``"held_out"``, ``"probe"``), seeded by a 63-bit
    hash of ``purpose`` and ``seed``: distinct from every training batch's ``seed·1 000 003 + step``."""
    digest = hashlib.sha256(f"claimlens/{purpose}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@functools.lru_cache(maxsize=4)
def _train_set(task: RepeatedSubsequence) -> SequenceBatch:
    return task.sample(task.n_sequences, _stream("train_set", task.split_seed))


def task_of(cfg: TaskConfig, split: dict | None = None) -> ModularAddition | RepeatedSubsequence:
    """The task of a config; for modular addition the split is ``split``'s index lists when given (a stored
    run; ``{"rule": "unknown", "reason": …}``: unknown), else Nanda's rule."""
    if cfg.is_sequences:
        return RepeatedSubsequence.from_config(cfg)
    if split is None:
        return ModularAddition.from_config(cfg)
    if split.get("rule") == "unknown":
        return ModularAddition(cfg.p, split_unknown=str(split.get("reason") or "the source saved no split"))
    return ModularAddition(cfg.p, torch.tensor(split["train"], dtype=torch.int64),
                           torch.tensor(split["test"], dtype=torch.int64))

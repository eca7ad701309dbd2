"""One checkpoint of a run with its forward pass over every input computed once (cf. TransformerLens's
``ActivationCache``): the analyses and the claims about the final model share it.

The final checkpoint of each run is kept in a :class:`FinalCheckpoints` (the claimlens session keeps one: the key
frequencies, the progress measures and the final-model claims all need its activations); other checkpoints are
made, used and dropped by the analysis loop, so memory does not grow with the number of checkpoints.
"""

from __future__ import annotations

from functools import cached_property

import torch

from claimlens.models import Activations, Params, forward


class Checkpoint:
    """Checkpoint ``epoch`` of ``run``: ``params`` (loaded and validated once) and ``activations``
    (one forward pass over all ``p²`` inputs ``run.task.tokens``, with the final position's attention
    pattern and MLP activations: :class:`claimlens.models.Activations`)."""

    def __init__(self, run, epoch: int):
        self.run = run
        self.epoch = int(epoch)

    @cached_property
    def params(self) -> Params:
        return self.run.checkpoint(self.epoch)

    @cached_property
    def activations(self) -> Activations:
        with torch.no_grad():
            return forward(self.params, self.run.task.tokens, self.run.spec.model, cache=True)

    def __repr__(self) -> str:
        return f"Checkpoint(run={self.run.name!r}, epoch={self.epoch})"


class FinalCheckpoints:
    """Final checkpoints kept with their activations, one per run (keyed by the run's path, content hash and name: a
    cached run reused under another spec's name keeps that name in its messages). The claimlens session keeps one
    for the whole session and empties it at the end (:meth:`clear`); an analysis called without one makes its own
    for the call."""

    def __init__(self):
        self._kept: dict[tuple[str, str, str], Checkpoint] = {}

    def get(self, run) -> Checkpoint:
        """The final checkpoint of ``run``, made on first use. Raises :class:`claimlens.errors.RunError` for a run of
        the repeated-subsequence task (the checkpoint analyses read the modular-addition grid)."""
        _check_grid(run)
        key = (str(run.path), run.content_hash, run.name)
        if key not in self._kept:
            self._kept[key] = Checkpoint(run, run.epochs[-1])
        return self._kept[key]

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)


def _check_grid(run) -> None:
    if run.spec.task.is_sequences:
        from claimlens.errors import RunError

        raise RunError(f"run {run.name!r} learns repeated subsequences: the checkpoint analyses read the "
                       f"modular-addition grid (claimlens.families.induction.analysis measures this run)")


def final_checkpoint(run, cache: FinalCheckpoints | None = None) -> Checkpoint:
    """The final checkpoint of ``run``: the one ``cache`` keeps (made there on first use), or a fresh one without a
    cache. Raises :class:`claimlens.errors.RunError` for a run of the repeated-subsequence task."""
    if cache is not None:
        return cache.get(run)
    _check_grid(run)
    return Checkpoint(run, run.epochs[-1])


def checkpoint(run, epoch: int, cache: FinalCheckpoints | None = None) -> Checkpoint:
    """Checkpoint ``epoch`` of ``run``: the final one as :func:`final_checkpoint` gives it, or a fresh one."""
    return final_checkpoint(run, cache) if epoch == run.epochs[-1] else Checkpoint(run, epoch)

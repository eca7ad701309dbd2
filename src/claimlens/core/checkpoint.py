"""One checkpoint of a run with its forward pass over every input computed once (cf. TransformerLens's
``ActivationCache``): the analyses and the claims about the final model share it.

The final checkpoint of each run is kept for the session (the key frequencies, the progress measures and
the final-model claims all need its activations); other checkpoints are made, used and dropped by the
analysis loop, so memory does not grow with the number of checkpoints.
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


_FINAL: dict[tuple[str, str, str], Checkpoint] = {}


def final_checkpoint(run) -> Checkpoint:
    """The final checkpoint of ``run``, shared for the session (keyed by the run's path, content hash and name: a
    cached run reused under another spec's name keeps that name in its messages)."""
    if run.spec.task.is_sequences:
        from claimlens.errors import RunError

        raise RunError(f"run {run.name!r} learns repeated subsequences: the checkpoint analyses read the "
                       f"modular-addition grid (claimlens.families.induction.analysis measures this run)")
    key = (str(run.path), run.content_hash, run.name)
    if key not in _FINAL:
        _FINAL[key] = Checkpoint(run, run.epochs[-1])
    return _FINAL[key]


def checkpoint(run, epoch: int) -> Checkpoint:
    """Checkpoint ``epoch`` of ``run``: the shared final one, or a fresh one."""
    return final_checkpoint(run) if epoch == run.epochs[-1] else Checkpoint(run, epoch)

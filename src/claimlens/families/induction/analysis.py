"""The induction measures of a run of the induction toy at every checkpoint (claims_catalogue §3.6), on the task's
fixed probe batch (:meth:`claimlens.tasks.RepeatedSubsequence.probe`): per head, the induction score of every
layer and the previous-token score; the loss of each repeat; the in-context-learning score. One forward pass per
checkpoint (64 sequences), a few seconds for a run: computed on demand, not cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from claimlens.core.series import Series
from claimlens.errors import RunError
from claimlens.families.induction import metrics as M
from claimlens.models.attn_only import forward
from claimlens.tasks import RepeatedSubsequence

# Olsson et al. take the loss at token 500 minus the loss at token 50 of a 512-token context (about 1/10 and the
# end); here the same fractions of the sequence.
ICL_EARLY_FRACTION = 0.1


@dataclass(frozen=True)
class InductionMeasures:
    """Series over the checkpoints of one run: ``induction_score`` and ``previous_token_score`` with one row per
    head (labels ``"L{layer}H{head}"``), ``repeat_loss`` with one row per repeat (``"repeat 1"`` is the first
    occurrence), ``icl_score`` and ``probe_loss`` (the scored positions' mean loss on the probe batch, nats); ``offset_scores``
    the attention of every head to each offset ``d = 1 … 2·repeat_len + 1`` after the previous occurrence
    (``d = 1``: the induction score) at every checkpoint (recorded, not judged).
    ``chance`` is the induction score of uniform attention on the probe batch, ``previous_chance`` the
    previous-token score of uniform attention (the rules judge both scores as multiples of these)."""

    induction_score: Series
    previous_token_score: Series
    offset_scores: torch.Tensor  # [n_layers·n_heads, max_offset, n_checkpoints]: metrics.induction.offset_match_scores
    repeat_loss: Series
    icl_score: Series
    probe_loss: Series
    chance: float
    n_layers: int
    previous_chance: float

    def best_offset(self, layer: int, checkpoint: int = -1) -> tuple[str, int, float]:
        """The head of ``layer`` and the offset ``d`` with the largest attention to "previous occurrence + d" at a
        checkpoint (the last by default): ``(head label, d, score)``."""
        rows = [i for i, label in enumerate(self.induction_score.labels) if label.startswith(f"L{layer}H")]
        block = self.offset_scores[rows, :, checkpoint].nan_to_num(-1.0)
        flat = int(block.argmax())
        head, d = divmod(flat, block.shape[1])
        return self.induction_score.labels[rows[head]], d + 1, float(block[head, d])

    def offset_series(self, layer: int, d: int) -> Series:
        """The best head of ``layer``'s attention to "previous occurrence + d" over the checkpoints."""
        rows = [i for i, label in enumerate(self.induction_score.labels) if label.startswith(f"L{layer}H")]
        return Series(f"attention to previous occurrence + {d} (best head of layer {layer})",
                      self.induction_score.epochs, self.offset_scores[rows, d - 1].max(0).values[None])

    def best(self, series: Series, layer: int) -> Series:
        """The largest of one layer's heads at each checkpoint, as a one-row series."""
        rows = [i for i, label in enumerate(series.labels) if label.startswith(f"L{layer}H")]
        return Series(f"{series.name} (best head of layer {layer})", series.epochs, series.data[rows].max(0).values)


def measure(params, cfg, task: RepeatedSubsequence, probe) -> dict[str, torch.Tensor]:
    """The measures of one checkpoint on ``probe`` (:class:`claimlens.tasks.SequenceBatch`)."""
    with torch.no_grad():
        logits, patterns = forward(params, probe.tokens, cfg, patterns=True)
    losses = M.token_losses(logits, probe.tokens)
    scored = task.scored(probe)
    early = max(1, round(ICL_EARLY_FRACTION * (task.seq_len - 1)))
    return {
        "induction": torch.stack([M.induction_score(p, probe.starts, task.repeat_len) for p in patterns]).flatten(),
        "offsets": torch.cat([M.offset_match_scores(p, probe.starts, task.repeat_len, 2 * task.repeat_len + 1)
                              for p in patterns]),
        "previous": torch.stack([M.previous_token_score(p) for p in patterns]).flatten(),
        "repeats": M.repeat_losses(losses, probe.starts, task.repeat_len),
        "icl": torch.tensor(M.in_context_learning_score(losses, early, task.seq_len - 1)),
        "loss": losses[scored].mean(),
    }


def induction_over_run(run) -> InductionMeasures:
    """:func:`measure` at every checkpoint of ``run`` (a run of the repeated-subsequence task)."""
    spec = run.spec
    if not spec.task.is_sequences:
        raise RunError(f"run {run.name!r} learns {spec.task.kind}; the induction measures need a run of the "
                       f"repeated-subsequence task")
    task = RepeatedSubsequence.from_config(spec.task)
    probe = task.probe()
    rows = [measure(run.checkpoint(e), spec.model, task, probe) for e in run.epochs]
    L, H = spec.model.n_layers, spec.model.n_heads
    heads = [f"L{layer}H{h}" for layer in range(L) for h in range(H)]
    stack = {k: torch.stack([r[k] for r in rows], dim=-1).double() for k in rows[0]}
    epochs = torch.tensor(run.epochs)
    return InductionMeasures(
        induction_score=Series("induction score", epochs, stack["induction"], heads),
        previous_token_score=Series("previous-token score", epochs, stack["previous"], heads),
        offset_scores=stack["offsets"],
        repeat_loss=Series("loss per repeat (nats)", epochs, stack["repeats"],
                           [f"repeat {k + 1}" for k in range(task.n_repeats)]),
        icl_score=Series("in-context-learning score (nats)", epochs, stack["icl"]),
        probe_loss=Series("probe loss (nats)", epochs, stack["loss"]),
        chance=M.chance_induction_score(probe.starts, task.repeat_len),
        n_layers=L,
        previous_chance=M.chance_previous_token_score(task.seq_len),
    )

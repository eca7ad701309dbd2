"""Cross entropy in float64 and accuracy (G-CE). Pure functions."""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


def cross_entropy_f64(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> Float[Tensor, ""]:
    """Mean cross entropy ``[N, C], [N] -> []`` with log-softmax in float64.

    float32 log-softmax can only return multiples of about 1.2e-7 on confident logits, which cannot
    resolve the final losses of a grokked model (~1e-7); so the cast comes before the log-softmax.
    """
    return F.cross_entropy(logits.to(torch.float64), labels)


def accuracy(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> Float[Tensor, ""]:
    """Share of rows whose argmax is the label: ``[N, C], [N] -> []`` (float64)."""
    return (logits.argmax(-1) == labels).to(torch.float64).mean()


def token_losses(logits: Float[Tensor, "batch pos d_vocab_out"], tokens: Int[Tensor, "batch pos"]
                 ) -> Float[Tensor, "batch pos-1"]:
    """``[batch, pos − 1]``: the cross entropy (nats, float64) of each next-token prediction,
    ``logits [batch, pos, d_vocab]`` at ``t`` against ``tokens[:, t + 1]``."""
    logp = logits[:, :-1].double().log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)

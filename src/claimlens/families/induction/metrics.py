"""Induction metrics (claims_catalogue §3.6; Olsson et al. 2022, "In-context learning and induction heads"):
pure functions of attention patterns and per-token losses on a batch of repeated-subsequence sequences.

Conventions: ``pattern [batch, n_heads, query_pos, key_pos]`` is one layer's attention (TransformerLens's
``blocks.{l}.attn.hook_pattern``, rows summing to 1 over keys ``≤`` the query); ``starts [batch, n_repeats]`` the
first position of each repeat of the subsequence (:class:`claimlens.tasks.SequenceBatch`); ``repeat_len`` its
length. The output at position ``t`` predicts the token at ``t + 1``. The jaxtyping annotations (checked under the
test-suite) use these TransformerLens names (``docs/shapes.md``); ``n_pred = pos − 1`` is the number of next-token
predictions of a sequence, ``n_query = (n_repeats − 1)·repeat_len`` the query positions of the induction score.
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from claimlens.core.losses import token_losses  # noqa: F401  (the next-token losses; defined in the core)
from claimlens.core.series import Series


def induction_positions(starts: Int[Tensor, "batch n_repeats"], repeat_len: int
                        ) -> tuple[Int[Tensor, "batch n_query"], Int[Tensor, "batch n_query"]]:
    """Query and key positions of the induction score, ``[batch, (n_repeats − 1)·repeat_len]`` each: every token
    ``t = starts[k] + j`` of a later repeat (``k ≥ 1``) and the token right after its previous occurrence,
    ``starts[k − 1] + j + 1``."""
    j = torch.arange(repeat_len)
    query = (starts[:, 1:, None] + j).flatten(1)
    key = (starts[:, :-1, None] + j + 1).flatten(1)
    return query, key


def induction_score(pattern: Float[Tensor, "batch n_heads query_pos key_pos"], starts: Int[Tensor, "batch n_repeats"], repeat_len: int
                    ) -> Float[Tensor, " n_heads"]:
    """Per head ``[n_heads]``: the mean attention from a token of a later repeat to the token after its previous
    occurrence (Olsson et al. 2022, "prefix matching"; catalogue §3.6 ``induction_heads_form_at_the_phase_change``).
    1 for a perfect induction head; about ``1 / (query_pos + 1)`` for uniform attention."""
    query, key = induction_positions(starts, repeat_len)
    b = torch.arange(pattern.shape[0])[:, None]
    return pattern[b, :, query, key].mean(dim=(0, 1))  # advanced indices first: [batch, n_query, head]


def offset_match_scores(pattern: Float[Tensor, "batch n_heads query_pos key_pos"], starts: Int[Tensor, "batch n_repeats"], repeat_len: int,
                        max_offset: int) -> Float[Tensor, "n_heads {max_offset}"]:
    """Per head and offset ``[n_heads, max_offset]``: column ``d − 1`` is the mean attention from a token of a later
    repeat to the position ``d`` after its previous occurrence, over the query/key pairs with the key not after the
    query (NaN where there is none). ``d = 1`` is :func:`induction_score`. A head matching the current token against
    a token copied from further back than the previous position (a layer-0 head attending ``d − 1`` back instead of
    1 back) shows its peak at that ``d``: a shifted induction circuit the ``d = 1`` score does not see."""
    query, key = induction_positions(starts, repeat_len)  # key: previous occurrence + 1
    b = torch.arange(pattern.shape[0])[:, None].expand_as(query)
    out = torch.full((pattern.shape[1], max_offset), float("nan"), dtype=pattern.dtype)
    for d in range(1, max_offset + 1):
        k = key + (d - 1)
        ok = k <= query
        if bool(ok.any()):
            out[:, d - 1] = pattern[b[ok], :, query[ok], k[ok]].mean(0)
    return out


def previous_token_score(pattern: Float[Tensor, "batch n_heads query_pos key_pos"]) -> Float[Tensor, " n_heads"]:
    """Per head ``[n_heads]``: the mean attention from each position ``t ≥ 1`` to ``t − 1`` (a previous-token head
    scores near 1)."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def chance_induction_score(starts: Int[Tensor, "batch n_repeats"], repeat_len: int) -> float:
    """What :func:`induction_score` gives for uniform causal attention: the mean of ``1 / (t + 1)`` (one over the
    number of keys a query at position ``t`` sees) over its query positions (catalogue Revision 3: "chance")."""
    query, _ = induction_positions(starts, repeat_len)
    return float((1.0 / (query + 1).double()).mean())


def chance_previous_token_score(seq_len: int) -> float:
    """What :func:`previous_token_score` gives for uniform causal attention on sequences of ``seq_len`` tokens: the
    mean of ``1 / (t + 1)`` over the positions ``t = 1 … seq_len − 1``. Raises ValueError for ``seq_len < 2``."""
    if seq_len < 2:
        raise ValueError(f"a previous-token score needs sequences of ≥ 2 tokens; got seq_len={seq_len}")
    return float((1.0 / torch.arange(2, seq_len + 1, dtype=torch.float64)).mean())


def times_chance(score: float | Float[Tensor, "*shape"] | Series, chance: float
                 ) -> float | Float[Tensor, "*shape"] | Series:
    """``score / chance`` (a float, tensor or :class:`claimlens.core.series.Series`): a score as a multiple of what
    uniform attention over the same probe positions gives (catalogue Revision 3, "× chance"). Raises ValueError
    for a chance that is not positive."""
    if not chance > 0:
        raise ValueError(f"chance must be a positive score of uniform attention; got {chance!r}")
    if isinstance(score, Series):
        return Series(f"{score.name} (× chance)", score.epochs, score.data / chance, score.labels)
    return score / chance


def repeat_losses(losses: Float[Tensor, "batch n_pred"], starts: Int[Tensor, "batch n_repeats"], repeat_len: int
                  ) -> Float[Tensor, " n_repeats"]:
    """``[n_repeats]``: the mean loss of predicting the tokens of each repeat (first occurrence, second, …), from
    ``losses [batch, pos − 1]`` of :func:`token_losses` (the prediction of token ``t`` is at index ``t − 1``).
    The first token of a repeat follows a random token and is left out: only ``repeat_len − 1`` tokens each."""
    j = torch.arange(1, repeat_len)
    index = (starts[:, :, None] + j - 1)  # [batch, n_repeats, repeat_len − 1]
    b = torch.arange(losses.shape[0])[:, None, None]
    return losses[b, index].mean(dim=(0, 2))


def in_context_learning_score(losses: Float[Tensor, "batch n_pred"], early: int, late: int) -> float:
    """Olsson et al.'s in-context-learning score: the mean loss of the prediction of token ``late`` minus that of
    token ``early`` (nats; negative when later tokens are predicted better), from ``losses [batch, pos − 1]``."""
    if not 1 <= early < late <= losses.shape[1]:
        raise ValueError(f"need 1 ≤ early < late ≤ {losses.shape[1]}; got early={early}, late={late}")
    return float(losses[:, late - 1].mean() - losses[:, early - 1].mean())

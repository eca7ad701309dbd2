"""The transformer's forward passes over property-format parameters.

:func:`claimlens.models.forward` (through :func:`transformer_forward`) is a plain-torch path for training and batched
analysis. It computes the query, the MLP and the unembedding at the final (``=``) position only, since nothing else
is ever used, and computes the per-position key/value/query projections once per *vocabulary token* rather than
once per example. That shortcut holds for one layer only (a second block reads every position's output of the
first): a model of ``n_layers > 1`` goes through :func:`deep_forward`, every position through every block.
:func:`sequence_forward` is the same model written plainly, for any depth; ``tests/test_models.py`` shows all of
them equal to the TransformerLens bridge (:mod:`claimlens.models.bridge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from claimlens.config import ModelConfig
from claimlens.models.schema import N_CTX, Params, n_ctx

ACT = {"relu": F.relu, "gelu": F.gelu}


@dataclass
class Activations:
    """Final-position activations of one forward pass (leading axes: ``batch``). For a transformer of
    ``n_layers > 1`` the pattern and the MLP activations are those of the **last** block (its attention from the
    final query, its MLP at the final position): what the unembedding reads directly."""

    logits: torch.Tensor  # [batch, p]
    pattern: torch.Tensor | None = None  # [batch, n_heads, pos] attention from the final query
    resid_mid: torch.Tensor | None = None  # [batch, d_model]
    mlp_pre: torch.Tensor | None = None  # [batch, d_mlp] (MLP family: first hidden layer)
    mlp_post: torch.Tensor | None = None  # [batch, d_mlp]


def transformer_forward(params: Params, tokens: torch.Tensor, act, cache: bool, attn_rate: float = 1.0) -> Activations:
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    pre = "blocks.0.attn."
    W_Q, W_K, W_V, W_O = (params[pre + n] for n in ("W_Q", "W_K", "W_V", "W_O"))
    b_Q, b_K, b_V, b_O = (params[pre + n] for n in ("b_Q", "b_K", "b_V", "b_O"))
    n_pos, last = tokens.shape[1], tokens.shape[1] - 1
    d_head = W_Q.shape[-1]

    # Residual stream per (position, vocabulary token): a table instead of one row per example.
    # Rows are gathered with index_select, whose backward is far faster on CPU than indexing's.
    x_tab = W_E.unsqueeze(0) + W_pos[:n_pos].unsqueeze(1)  # [pos, vocab, d_model]
    k_tab = torch.einsum("pvd,hde->pvhe", x_tab, W_K) + b_K  # [pos, vocab, head, d_head]
    v_tab = torch.einsum("pvd,hde->pvhe", x_tab, W_V) + b_V  # [pos, vocab, head, d_head]
    q_tab = torch.einsum("vd,hde->vhe", x_tab[last], W_Q) + b_Q  # [vocab, head, d_head]

    def rows(table: torch.Tensor, j: int) -> torch.Tensor:  # [vocab, *rest] -> [batch, *rest]
        return table.flatten(1).index_select(0, tokens[:, j]).view(-1, *table.shape[1:])

    k = torch.stack([rows(k_tab[j], j) for j in range(n_pos)], dim=1)  # [batch, pos, head, d_head]
    v = torch.stack([rows(v_tab[j], j) for j in range(n_pos)], dim=1)  # [batch, pos, head, d_head]
    q = rows(q_tab, last)  # [batch, head, d_head]

    # Tiny per-example contractions: elementwise products beat batched matmuls here.
    scores = (k * q.unsqueeze(1)).sum(-1) / math.sqrt(d_head)  # [batch, pos, head]; the last query sees all
    pattern = scores.softmax(dim=1).transpose(1, 2)  # [batch, head, pos]
    if attn_rate != 1:  # Clock/Pizza: α·softmax + (1 − α)·J, J all ones (not 1/pos: rows sum to 1 + (1 − α)(pos − 1))
        pattern = attn_rate * pattern + (1 - attn_rate)
    z = (pattern.transpose(1, 2).unsqueeze(-1) * v).sum(1)  # [batch, head, d_head]
    attn_out = z.flatten(1) @ W_O.flatten(0, 1) + b_O  # [batch, d_model]

    resid_mid = rows(x_tab[last], last) + attn_out  # [batch, d_model]
    # addmm fuses each bias (and the residual) into its matmul.
    mlp_pre = torch.addmm(params["blocks.0.mlp.b_in"], resid_mid, params["blocks.0.mlp.W_in"])  # [batch, d_mlp]
    mlp_post = act(mlp_pre)
    resid_post = torch.addmm(resid_mid + params["blocks.0.mlp.b_out"], mlp_post, params["blocks.0.mlp.W_out"])
    logits = torch.addmm(params["unembed.b_U"], resid_post, params["unembed.W_U"])  # [batch, p]
    if not cache:
        return Activations(logits)
    return Activations(logits, pattern, resid_mid, mlp_pre, mlp_post)


def sequence_forward(params: Params, embeddings: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The transformer written plainly, every position through every block as in the source code (Nanda et al.'s
    and Zhong et al.'s ``Transformer.forward``): final-position logits ``[batch, p]`` from the token embeddings
    ``embeddings [batch, pos, d_model]`` (rows of ``W_E``, before the positional embedding), for any ``n_layers``.

    The reference for :func:`forward` (any attention rate, with or without the causal mask) and the function whose
    input gradients define gradient symmetricity (Zhong et al. 2023, Def. 4.1)."""
    x = _blocks(params, embeddings + params["pos_embed.W_pos"][: embeddings.shape[1]], cfg)[0]
    return (x @ params["unembed.W_U"] + params["unembed.b_U"])[:, -1]


def _blocks(params: Params, x: torch.Tensor, cfg: ModelConfig, keep_last: bool = False
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The residual stream ``x [batch, pos, d_model]`` through every block (attention α·softmax + (1 − α)·J with
    ``J`` all ones and the causal mask if ``cfg.causal``, then the MLP; no LayerNorm), and, with ``keep_last``, the
    last block's ``pattern [batch, head, query, key]``, ``resid_mid``, ``mlp_pre``, ``mlp_post`` (``[batch, pos, ·]``)."""
    kept: dict[str, torch.Tensor] = {}
    n = x.shape[1]
    for layer in range(cfg.n_layers):
        a, m = f"blocks.{layer}.attn.", f"blocks.{layer}.mlp."
        q = torch.einsum("bpd,hde->bhpe", x, params[a + "W_Q"]) + params[a + "b_Q"][:, None]
        k = torch.einsum("bpd,hde->bhpe", x, params[a + "W_K"]) + params[a + "b_K"][:, None]
        v = torch.einsum("bpd,hde->bhpe", x, params[a + "W_V"]) + params[a + "b_V"][:, None]
        scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(q.shape[-1])
        if cfg.causal:
            scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=x.device).tril(), float("-inf"))
        pattern = cfg.attn_rate * scores.softmax(-1) + (1 - cfg.attn_rate)  # J: all ones (Zhong et al. §5)
        z = torch.einsum("bhqk,bhke->bhqe", pattern, v)
        x = x + torch.einsum("bhqe,hed->bqd", z, params[a + "W_O"]) + params[a + "b_O"]
        pre = x @ params[m + "W_in"] + params[m + "b_in"]
        post = ACT[cfg.act_fn](pre)
        if keep_last and layer == cfg.n_layers - 1:
            kept = {"pattern": pattern, "resid_mid": x, "mlp_pre": pre, "mlp_post": post}
        x = x + post @ params[m + "W_out"] + params[m + "b_out"]
    return x, kept


def deep_forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig, cache: bool) -> Activations:
    """:func:`forward` of a transformer of any depth, plainly (:func:`_blocks`, every position through every block):
    logits ``[batch, p]`` at the final position of ``tokens [batch, pos]``; with ``cache``, the last block's
    attention from the final query ``[batch, head, pos]`` and its ``resid_mid`` / MLP activations at the final
    position (see :class:`Activations`)."""
    x = params["embed.W_E"].index_select(0, tokens.flatten()).view(*tokens.shape, -1)
    x, kept = _blocks(params, x + params["pos_embed.W_pos"][: tokens.shape[1]], cfg, keep_last=cache)
    logits = x[:, -1] @ params["unembed.W_U"] + params["unembed.b_U"]  # [batch, p]
    if not cache:
        return Activations(logits)
    return Activations(logits, kept["pattern"][:, :, -1], kept["resid_mid"][:, -1], kept["mlp_pre"][:, -1],
                       kept["mlp_post"][:, -1])


def naive_forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """:func:`sequence_forward` on ``tokens [batch, 3]`` (the ``=`` column dropped for a model without it)."""
    tokens = tokens[:, :n_ctx(cfg)]
    return sequence_forward(params, params["embed.W_E"][tokens], cfg)


def ablated_logits(params: Params, acts: Activations, cfg: ModelConfig, ablate: str) -> torch.Tensor:
    """Final-position logits ``[batch, p]`` of the transformer with one part zero-ablated (NCLSS App. A.1), from the
    activations of an ordinary forward pass (``cache=True``) on inputs ending in ``=``:

    * ``"mlp_skip"``: the residual path around the MLP removed, ``resid_post = mlp_out`` (the MLP still reads
      ``resid_mid``);
    * ``"attention"``: the heads' outputs zeroed (``z = 0``, so the attention block writes only ``b_O``); the
      query position then carries the ``=`` token's embedding, the same for every input.
    """
    if cfg.kind != "transformer" or acts.mlp_post is None:
        raise ValueError("ablated_logits needs a transformer's activations from forward(..., cache=True)")
    if cfg.n_layers != 1:
        raise ValueError(f"ablated_logits reads the 1-layer circuit (NCLSS App. A.1: the MLP's skip connection and the "
                         f"attention of the only block); this model has {cfg.n_layers} layers")
    act = ACT[cfg.act_fn]
    W_out, b_out = params["blocks.0.mlp.W_out"], params["blocks.0.mlp.b_out"]
    W_U, b_U = params["unembed.W_U"], params["unembed.b_U"]
    if ablate == "mlp_skip":
        return (acts.mlp_post @ W_out + b_out) @ W_U + b_U
    if ablate == "attention":
        if not cfg.equals_token:
            raise ValueError("the attention ablation keeps the '=' token's embedding at the query position; this "
                             "model reads [a, b] without '=' (equals_token = false), so the ablation is not defined")
        equals = params["embed.W_E"].shape[0] - 1  # the '=' token, the last of the vocabulary
        resid_mid = params["embed.W_E"][equals] + params["pos_embed.W_pos"][N_CTX - 1] + params["blocks.0.attn.b_O"]
        mlp_post = act(resid_mid @ params["blocks.0.mlp.W_in"] + params["blocks.0.mlp.b_in"])
        logits = (resid_mid + mlp_post @ W_out + b_out) @ W_U + b_U  # [p]: the same for every input
        return logits.expand(acts.logits.shape[0], -1)
    raise ValueError(f"unknown ablation {ablate!r}; use 'mlp_skip' or 'attention'")

"""The attention-only transformer of the induction toy (claims_catalogue §3.6), in TransformerLens property format.

Parameters (``L`` layers, ``V = d_vocab``, ``T = n_ctx``)::

    embed.W_E [V, d_model]                   pos_embed.W_pos [T, d_model]
    blocks.{l}.ln1.w / ln1.b [d_model]       (with layer_norm)
    blocks.{l}.attn.W_Q/W_K/W_V [n_heads, d_model, d_head]   b_Q/b_K/b_V [n_heads, d_head]
    blocks.{l}.attn.W_O [n_heads, d_head, d_model]           b_O [d_model]
    ln_final.w / ln_final.b [d_model]        (with layer_norm)
    unembed.W_U [d_model, V]                 unembed.b_U [V]

The forward is TransformerLens's for ``attn_only=True, normalization_type="LN"`` (or ``None``): the residual
stream starts as ``W_E[token] + W_pos[position]``, each block adds causal multi-head attention on
``LN(resid)``, and the logits are ``LN(resid) @ W_U + b_U`` (``tests/test_induction.py`` checks it against the
TransformerLens 4 bridge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from claimlens.config import ModelConfig

Params = Mapping[str, torch.Tensor]


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    D, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (cfg.d_vocab, D), "pos_embed.W_pos": (cfg.n_ctx, D)}
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}."
        if cfg.layer_norm:
            shapes[b + "ln1.w"], shapes[b + "ln1.b"] = (D,), (D,)
        for n in ("W_Q", "W_K", "W_V"):
            shapes[b + "attn." + n] = (H, D, dh)
        shapes[b + "attn.W_O"] = (H, dh, D)
        for n in ("b_Q", "b_K", "b_V"):
            shapes[b + "attn." + n] = (H, dh)
        shapes[b + "attn.b_O"] = (D,)
    if cfg.layer_norm:
        shapes["ln_final.w"], shapes["ln_final.b"] = (D,), (D,)
    shapes["unembed.W_U"] = (D, cfg.d_vocab)
    shapes["unembed.b_U"] = (cfg.d_vocab,)
    return shapes


def frozen(cfg: ModelConfig) -> set[str]:
    """The zero biases a model without ``attn_bias`` / ``unembed_bias`` does not have."""
    out: set[str] = set()
    if not cfg.attn_bias:
        out |= {f"blocks.{layer}.attn.b_{x}" for layer in range(cfg.n_layers) for x in "QKVO"}
    if not cfg.unembed_bias:
        out.add("unembed.b_U")
    return out


def init_params(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """TransformerLens's initialisation of a small model (``init_mode="gpt2"``): every matrix
    ``N(0, initializer_range²)`` with ``initializer_range = 0.8 / √d_model``; biases 0; LayerNorm weights 1."""
    gen = torch.Generator().manual_seed(seed)
    std = 0.8 / math.sqrt(cfg.d_model)
    out = {}
    for name, shape in param_shapes(cfg).items():
        leaf = name.rsplit(".", 1)[1]
        if leaf == "w":
            out[name] = torch.ones(shape)
        elif leaf.startswith("b"):
            out[name] = torch.zeros(shape)
        else:
            out[name] = torch.randn(shape, generator=gen) * std
    return out


def forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig, *, patterns: bool = False):
    """Logits ``[batch, pos, d_vocab]`` for ``tokens [batch, pos]`` (``pos ≤ n_ctx``); with ``patterns``, also the
    attention patterns of every layer, ``[n_layers][batch, n_heads, query_pos, key_pos]`` (TransformerLens's
    ``blocks.{l}.attn.hook_pattern``)."""
    n_pos = tokens.shape[1]
    x = params["embed.W_E"].index_select(0, tokens.flatten()).view(*tokens.shape, -1) + params["pos_embed.W_pos"][:n_pos]
    batch, H = tokens.shape[0], cfg.n_heads
    causal = torch.full((n_pos, n_pos), float("-inf"), device=tokens.device).triu(1)  # 0 on and below the diagonal
    out = []
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}."
        h = F.layer_norm(x, x.shape[-1:], params[b + "ln1.w"], params[b + "ln1.b"], eps=1e-5) if cfg.layer_norm else x
        q, k, v = (torch.einsum("bpd,hde->bhpe", h, params[b + "attn." + n]) + params[b + "attn.b" + n[1:]][:, None]
                   for n in ("W_Q", "W_K", "W_V"))
        d_head = q.shape[-1]
        # scale and causal mask fused into the score product: causal + (q kᵀ) / √d_head
        scores = torch.baddbmm(causal, q.reshape(batch * H, n_pos, d_head),
                               k.reshape(batch * H, n_pos, d_head).transpose(1, 2), alpha=1 / math.sqrt(d_head))
        pattern = scores.softmax(-1).view(batch, H, n_pos, n_pos)  # [batch, head, query, key]
        if patterns:
            out.append(pattern)
        x = x + torch.einsum("bhpe,hed->bpd", pattern @ v, params[b + "attn.W_O"]) + params[b + "attn.b_O"]
    if cfg.layer_norm:
        x = F.layer_norm(x, x.shape[-1:], params["ln_final.w"], params["ln_final.b"], eps=1e-5)
    logits = x @ params["unembed.W_U"] + params["unembed.b_U"]
    return (logits, out) if patterns else logits

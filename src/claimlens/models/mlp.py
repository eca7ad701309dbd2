"""The MLP family's forward pass over property-format parameters (names in :mod:`claimlens.models.schema`)."""

from __future__ import annotations

import torch

from claimlens.config import MLPConfig
from claimlens.models.schema import Params
from claimlens.models.transformer import ACT, Activations


def mlp_forward(params: Params, tokens: torch.Tensor, cfg: MLPConfig, cache: bool) -> Activations:
    W_E = params["embed.W_E"]
    act = ACT[cfg.act_fn]
    first_pre = first_post = None
    if cfg.hidden:
        # The first layer is linear in each embedding, so it is applied to the p vocabulary rows once and the
        # results gathered: (E[a] + E[b]) W = (E W)[a] + (E W)[b]; concat: E[a] W_top + E[b] W_bottom. The same
        # function as the per-example product, with p instead of batch rows in the big product (fp32 rounding
        # differs only in summation order).
        W0, d = params["mlp.0.W"], W_E.shape[1]
        if cfg.combine == "sum":
            top = bottom = W_E @ W0
        else:
            top, bottom = W_E @ W0[:d], W_E @ W0[d:]
        pre = top.index_select(0, tokens[:, 0]) + bottom.index_select(0, tokens[:, 1]) + params["mlp.0.b"]
        h = first_post = act(pre)
        first_pre = pre
    else:
        e_a, e_b = W_E.index_select(0, tokens[:, 0]), W_E.index_select(0, tokens[:, 1])  # [batch, d_embed]
        h = e_a + e_b if cfg.combine == "sum" else torch.cat([e_a, e_b], dim=-1)
    for i in range(1, len(cfg.hidden)):
        h = act(h @ params[f"mlp.{i}.W"] + params[f"mlp.{i}.b"])
    logits = h @ params["unembed.W_U"] + params["unembed.b_U"]
    if not cache:
        return Activations(logits)
    return Activations(logits, mlp_pre=first_pre, mlp_post=first_post)

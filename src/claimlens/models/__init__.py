"""Models, over parameters in TransformerLens *property format*.

Two ways to run the same parameters:

* :func:`claimlens.models.bridge.build_bridge` / ``load_into_bridge`` build the transformer of Nanda et al. (any
  ``n_layers``) through TransformerLens 4 (:mod:`claimlens.models.bridge`, the only module that imports TransformerLens, lazily).
* :func:`forward` is a plain-torch path for training and batched analysis (:mod:`claimlens.models.transformer`,
  :mod:`claimlens.models.mlp`); ``tests/test_models.py`` shows it equal to the bridge.

Names and shapes, initialisation and checks: :mod:`claimlens.models.schema`. This package re-exports what callers
use; tests patch :func:`forward` here.
"""

from __future__ import annotations

import torch

from claimlens.config import ModelConfig
from claimlens.models import attn_only
from claimlens.models.bridge import bridge_activations, bridge_config, bridge_params, build_bridge, load_into_bridge
from claimlens.models.mlp import mlp_forward
from claimlens.models.schema import (
    N_CTX,
    Params,
    d_vocab,
    fingerprint,
    frozen_params,
    init_params,
    layers_in,
    n_ctx,
    param_shapes,
    validate_params,
)
from claimlens.models.transformer import (
    ACT,
    Activations,
    ablated_logits,
    deep_forward,
    naive_forward,
    sequence_forward,
    transformer_forward,
)

__all__ = [
    "N_CTX", "Activations", "Params", "ablated_logits", "attn_only", "bridge_activations", "bridge_config",
    "bridge_params", "build_bridge", "d_vocab", "deep_forward", "fingerprint", "forward", "frozen_params", "init_params",
    "layers_in", "load_into_bridge", "n_ctx", "naive_forward", "param_shapes", "sequence_forward", "validate_params",
]


def forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig, *, cache: bool = False) -> Activations:
    """Logits ``[batch, p]`` at the final position for ``tokens [batch, 3]``; activations if ``cache`` (of the last
    block for a transformer of several layers)."""
    if cfg.kind == "transformer":
        if not cfg.equals_token and tokens.shape[1] == N_CTX:
            tokens = tokens[:, :N_CTX - 1]  # the task's rows are [a, b, =]; this model never reads '='
        if cfg.n_layers != 1:  # the final-position shortcut holds for one layer only
            return deep_forward(params, tokens, cfg, cache)
        return transformer_forward(params, tokens, ACT[cfg.act_fn], cache, cfg.attn_rate)
    return mlp_forward(params, tokens, cfg, cache)

"""A 1-layer transformer whose weights are set by hand to run the trig-identity algorithm.

For each key frequency ``k`` (``w = 2πk/p``):

* the embedding holds ``cos wx, sin wx, cos 2wx, sin 2wx`` (the ``=`` token and positions are 0);
* one head with zero queries/keys attends uniformly (1/3) to ``a``, ``b`` and ``=``; values and
  output ×3 give ``u = cos wa + cos wb``, ``v = sin wa + sin wb`` and the ``2w`` sums in the residual;
* the ReLU MLP computes squares by piecewise-linear interpolation (knots every ``h``) and writes
  ``f = u² − v² = 2cos w(a+b) + cos 2wa + cos 2wb`` and ``g = 2uv = 2sin w(a+b) + sin 2wa + sin 2wb``;
* the unembedding reads ``f·cos wc + g·sin wc`` and subtracts the ``2w`` sums' contribution through
  the skip path, leaving logits ``≈ scale · Σ_k 2cos(w_k(a + b − c))``.
"""

from __future__ import annotations

import math

import torch

from claimlens.config import TransformerConfig


def square_knots(h: float, t_max: float) -> list[tuple[float, float]]:
    """(threshold, weight) pairs with ``Σ w·ReLU(t − τ) + w·ReLU(−t − τ) ≈ t²`` on ``[−t_max, t_max]``."""
    n = math.ceil(t_max / h)
    return [(0.0, h)] + [(j * h, 2 * h) for j in range(1, n)]


def trig_model(p: int, keys: list[int], *, scale: float = 4.0, h: float = 0.125) -> tuple[TransformerConfig, dict]:
    knots = square_knots(h, 2 * math.sqrt(2))
    per_square = 2 * len(knots)
    d_mlp = len(keys) * 4 * per_square
    d_model = 6 * len(keys)
    cfg = TransformerConfig(d_model=d_model, n_heads=1, d_head=d_model, d_mlp=d_mlp)
    P = {n: torch.zeros(s) for n, s in _shapes(cfg, p).items()}
    x = torch.arange(p, dtype=torch.float64)
    c = torch.arange(p, dtype=torch.float64)
    neuron = 0
    for i, k in enumerate(keys):
        w = 2 * math.pi * k / p
        base = 6 * i  # dims: cos, sin, cos2, sin2, f, g
        for j, f in enumerate((torch.cos(w * x), torch.sin(w * x), torch.cos(2 * w * x), torch.sin(2 * w * x))):
            P["embed.W_E"][:p, base + j] = f.float()
        # squares: sq(u), sq(v), sq(u+v), sq(u−v); f = sq(u) − sq(v); g = (sq(u+v) − sq(u−v)) / 2
        for direction, f_weight, g_weight in (((1, 0), 1, 0), ((0, 1), -1, 0), ((1, 1), 0, 0.5), ((1, -1), 0, -0.5)):
            for sign in (1, -1):
                for tau, weight in knots:
                    P["blocks.0.mlp.W_in"][base, neuron] = sign * direction[0]
                    P["blocks.0.mlp.W_in"][base + 1, neuron] = sign * direction[1]
                    P["blocks.0.mlp.b_in"][neuron] = -tau
                    P["blocks.0.mlp.W_out"][neuron, base + 4] = f_weight * weight
                    P["blocks.0.mlp.W_out"][neuron, base + 5] = g_weight * weight
                    neuron += 1
        P["unembed.W_U"][base + 4] = (scale * torch.cos(w * c)).float()
        P["unembed.W_U"][base + 5] = (scale * torch.sin(w * c)).float()
        P["unembed.W_U"][base + 2] = (-scale * torch.cos(w * c)).float()
        P["unembed.W_U"][base + 3] = (-scale * torch.sin(w * c)).float()
    eye = torch.eye(d_model)
    P["blocks.0.attn.W_V"][0] = eye
    P["blocks.0.attn.W_O"][0] = 3 * eye
    return cfg, P


def _shapes(cfg, p):
    from claimlens.models import param_shapes

    return param_shapes(cfg, p)

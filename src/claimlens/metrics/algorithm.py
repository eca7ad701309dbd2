"""Measurements of the Fourier multiplication algorithm in one (final) model, Nanda et al. 2023 §4 and App. A, C.

Pure functions of parameters and activations (no files, no pytest): what the final-model claims judge. Each
returns plain numbers (or small dataclasses of them). Dimensions as in :mod:`claimlens.metrics.progress`: ``N = p²``
inputs in grid order, ``p`` classes, ``M`` neurons, ``D`` d_model, ``H`` heads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from claimlens.metrics import fourier as fo
from claimlens.metrics import progress as pm
from claimlens.metrics.losses import cross_entropy_f64


@dataclass(frozen=True)
class NeuronClusters:
    assigned_share: float  # share of neurons explained ≥ fve by one frequency
    own_frequency_share: dict[int, float]  # per cluster k: share of its W_L Fourier norm in rows {2k−1, 2k}


def neuron_clusters(mlp_post: Float[Tensor, "N M"], W_L: Float[Tensor, "p M"], p: int, fve: float = 0.85
                    ) -> NeuronClusters:
    """G-NFRAC clusters (NCLSS §4.3): the share of neurons whose best frequency explains ≥ ``fve`` of their
    centred 2D-Fourier norm, and for each cluster the share of its ``W_L`` columns' Fourier norm in its own
    frequency."""
    kf = fo.key_frequencies_from_neurons(mlp_post, p, fo.frequencies(p), min_vote_share=0.0)
    clusters = pm.neuron_clusters(kf.details["neuron_freq"], kf.details["neuron_frac"], fve)
    coef = fo.fft_tokens(W_L.to(torch.float64), fo.fourier_basis(p)).pow(2)  # [p, M]
    own = {}
    for k in sorted(set(clusters.tolist()) - {-1}):
        cols = clusters == k
        own[int(k)] = float(coef[2 * k - 1:2 * k + 1][:, cols].sum() / coef[:, cols].sum())
    return NeuronClusters(float((clusters >= 1).double().mean()), own)


@dataclass(frozen=True)
class CosSumSummary:
    fve: float  # FVE of Σ_k α_k cos(w_k(a+b−c))
    fit_loss_ratio: float  # CE of the fit / CE of the logits
    fit_loss: float
    loss: float
    key_share: float  # share of the centred logits' squared norm in the key cos/sin(w(a+b)) directions


def cos_sum_summary(L: Float[Tensor, "N p"], labels: Int[Tensor, " N"], keys: list[int], p: int) -> CosSumSummary:
    """NCLSS §4.1–4.2: the cos-sum fit of the logits over the key frequencies, its loss, and the share of the
    logits in the key directions."""
    L64 = L.to(torch.float64)
    fit = pm.cos_sum_fit(L64, keys, p)
    ce_fit = cross_entropy_f64(fit.fitted_logits, labels).item()
    ce = cross_entropy_f64(L64, labels).item()
    centred = L64 - L64.mean(0)
    kept = fo.project(centred, fo.key_directions(p, keys)).pow(2).sum().item()
    return CosSumSummary(fit.fve, ce_fit / ce, ce_fit, ce, kept / centred.pow(2).sum().item())


@dataclass(frozen=True)
class FourierAblations:
    loss: float  # CE of the logits over all pairs
    restricted: float  # only the key cos/sin(w(a+b)) directions kept (bias-corrected)
    key_blocks: float  # only the 8-per-key 2D Fourier components kept
    nullspace: float  # neurons without their component in the key W_L directions
    span_only: float  # neurons with only that component


def fourier_ablations(L: Float[Tensor, "N p"], labels: Int[Tensor, " N"], mlp_post: Float[Tensor, "N M"],
                      W_L: Float[Tensor, "p M"], keys: list[int], p: int) -> FourierAblations:
    """NCLSS §4.4: losses of the final model's logits under the paper's Fourier ablations."""
    L64 = L.to(torch.float64)
    base = cross_entropy_f64(L64, labels).item()
    restricted = pm.restricted_loss(L64, labels, None, keys, p).item()
    blocks = cross_entropy_f64(pm.key_block_logits(L64, keys, p), labels).item()
    W_L = W_L.to(torch.float64)
    Q = pm.key_neuron_directions(W_L, keys, p)
    acts = mlp_post.to(torch.float64)
    in_span = acts @ Q @ Q.T
    nullspace = cross_entropy_f64(L64 - in_span @ W_L.T, labels).item()
    span_only = cross_entropy_f64(L64 - (acts - in_span) @ W_L.T, labels).item()
    return FourierAblations(base, restricted, blocks, nullspace, span_only)


def neuron_logit_map_residual(W_L: Float[Tensor, "p M"], keys: list[int], p: int) -> float:
    """NCLSS §4.2 eq. 2: ``‖W_L − Π W_L‖_F / ‖W_L‖_F`` with ``Π`` the projection of the logit axis onto the key
    rows ``{2k−1, 2k}`` of the Fourier basis (rank ``2·|keys|``; 10 for five keys). ``W_L`` as
    :func:`~claimlens.metrics.progress.neuron_logit_map` (``[p, M]``): the constant row counts as residual; its
    bias-like shift is removed first (every logit shifted alike changes no prediction)."""
    W = W_L.to(torch.float64)
    W = W - W.mean(0, keepdim=True)
    F = fo.fourier_basis(p)
    rows = F[[r for k in keys for r in (2 * k - 1, 2 * k)]]  # [2K, p] orthonormal
    projected = rows.T @ (rows @ W)
    return float((W - projected).norm() / W.norm().clamp_min(1e-300))


@dataclass(frozen=True)
class HeadFit:
    frequency: int  # the frequency whose fit explains the most
    fve: float  # fraction of the attention pattern's variance over inputs it explains


def attention_head_fits(pattern: Float[Tensor, "N H pos"], p: int) -> list[HeadFit]:
    """NCLSS App. C.1.2: per head, the attention from '=' to ``a`` as a function of ``(a, b)`` fitted by OLS with
    ``c0 + α(cos w_k a − cos w_k b) + β(sin w_k a − sin w_k b)`` for each frequency ``k``; the best ``k`` and its
    fraction of variance explained."""
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)  # row a·p + b
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    out = []
    for h in range(pattern.shape[1]):
        y = pattern[:, h, 0].to(torch.float64)
        total = float(((y - y.mean()) ** 2).sum())
        best = HeadFit(0, 0.0)
        for k in fo.frequencies(p):
            w = 2 * math.pi * k / p
            X = torch.stack([torch.ones_like(a), torch.cos(w * a) - torch.cos(w * b),
                             torch.sin(w * a) - torch.sin(w * b)], dim=1)
            coef = torch.linalg.lstsq(X, y.unsqueeze(1)).solution
            resid = float(((y.unsqueeze(1) - X @ coef) ** 2).sum())
            fve = 1 - resid / total if total > 0 else 0.0
            if fve > best.fve:
                best = HeadFit(k, fve)
        out.append(best)
    return out


def position_cosine(W_pos: Float[Tensor, "pos D"]) -> float:
    """Cosine of the position embeddings of ``a`` and ``b`` (ARENA §1)."""
    return float(torch.nn.functional.cosine_similarity(W_pos[0].double(), W_pos[1].double(), dim=0))


def compare(a: Tensor, b: Tensor) -> float:
    """G-CMP: ``‖A − B‖² / (‖A‖·‖B‖)``."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).pow(2).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def neuron_swap_asymmetry(mlp_post: Float[Tensor, "N M"], p: int) -> float:
    """G-CMP of the neuron activations ``N(a, b)`` against ``N(b, a)``."""
    grid = mlp_post.reshape(p, p, -1)
    return compare(grid, grid.transpose(0, 1))


def per_key_excluded_over_train(excluded_final: Mapping[int, float], train_final: float) -> dict[int, float]:
    """Per key: final excluded loss (that key ablated) over the final train loss."""
    return {k: v / max(train_final, 1e-300) for k, v in excluded_final.items()}

"""Progress measures of Nanda et al. 2023 and the ARENA material (claims_catalogue §2), and the measurements of the
Fourier multiplication algorithm in one (final) model (Nanda et al. 2023 §4, App. A, C). Pure functions (no files, no
pytest); the final model's measurements return plain numbers or small dataclasses of them.

Dimensions (the jaxtyping annotations, checked under the test-suite, use the one vocabulary of ``docs/shapes.md``,
TransformerLens's names; the docstrings' letters in brackets): ``batch`` the ``p²`` inputs in grid order (row
``a·p + b``; ``N``), ``p`` the output classes (the modulus), ``d_vocab`` input tokens (``V``), ``d_model`` (``D``),
``d_mlp`` MLP neurons (``M``), ``n_heads`` (``H``), ``n_keys`` key frequencies (``K``), ``n_rows`` the rows of a split.

Conventions (catalogue §5): logits are the analysis logits ``L [N, p]`` (final position, no ``=``
class) over **all** ``N = p²`` pairs in grid order; projections are fitted on all ``N`` rows and
only then restricted to a split; cross entropy is float64; the bias correction belongs to the
restricted loss only; key frequencies come from the final checkpoint.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from claimlens.core import fourier as fo
from claimlens.core.fourier import (
    NeuronPower,
    checked_power,
    fft2d,
    fft_tokens,
    fourier_basis,
    grid,
    ifft2d,
    key_directions,
    neuron_block_power,
    project,
    trig_directions,
)
from claimlens.core.losses import cross_entropy_f64
from claimlens.core.weights import sum_sq_weights  # noqa: F401  (G-SSW, a progress measure; defined in the core)

Logits = Float[Tensor, "batch p"]  # analysis logits at the final position, all batch = p² inputs
Labels = Int[Tensor, " batch"]  # (a + b) mod p per input
Rows = Int[Tensor, " n_rows"]  # indices into the batch = p² inputs (a split)
Scalar = Float[Tensor, ""]

# ----------------------------------------------------------------------------- losses of edited logits


def _ce_rows(L: Logits, labels: Labels, rows: Rows | None) -> Scalar:
    return cross_entropy_f64(L if rows is None else L[rows], labels if rows is None else labels[rows])


def excluded_loss(L: Logits, labels: Labels, train_idx: Rows, keys: list[int], p: int) -> Float[Tensor, " n_keys"]:
    """Per key frequency ``k``: train loss after removing the ``cos/sin(w_k(a+b))`` components of the
    logits (no bias correction). ``[N, p] -> [len(keys)]`` (G-EXCL, per frequency)."""
    L64 = L.to(torch.float64)
    out = [_ce_rows(L64 - project(L64, trig_directions(p, k)), labels, train_idx) for k in keys]
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


def excluded_loss_all_keys(L: Logits, labels: Labels, train_idx: Rows, keys: list[int], p: int) -> Scalar:
    """Train loss after removing the components of **all** key frequencies at once (the paper's
    Fig. 7 curve, "full excluded loss"). ``[N, p] -> []``."""
    L64 = L.to(torch.float64)
    return _ce_rows(L64 - project(L64, key_directions(p, keys)), labels, train_idx)


def random_grid_directions(p: int, m: int = 2, *, seed: int = 0) -> Float[Tensor, "n_dirs batch"]:
    """``m`` random orthonormal directions of the ``p²`` input grid, from a seeded generator: ``[m, N]`` float64
    (the random-direction control of the excluded loss, catalogue §3.1 after ARENA)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p * p, m, generator=gen, dtype=torch.float64))
    return q.T


def direction_ablation_ratio(L: Logits, labels: Labels, train_idx: Rows, directions: Float[Tensor, "n_dirs batch"]) -> Scalar:
    """Train loss after removing the components of the logits along ``directions [m, N]`` over the train
    loss itself: ``[N, p] -> []`` (≈ 1 when the directions carry nothing the model uses)."""
    L64 = L.to(torch.float64)
    return _ce_rows(L64 - project(L64, directions), labels, train_idx) / _ce_rows(L64, labels, train_idx)


def restricted_logits(L: Logits, keys: list[int], p: int) -> Logits:
    """Keep only the key ``cos/sin(w_k(a+b))`` components, then put back the per-class mean over all
    ``N`` inputs (the bias correction of ``test_logits``). ``[N, p] -> [N, p]`` float64."""
    L64 = L.to(torch.float64)
    kept = project(L64, key_directions(p, keys))
    return kept + (L64 - kept).mean(0, keepdim=True)


def restricted_loss(L: Logits, labels: Labels, rows: Rows | None, keys: list[int], p: int) -> Scalar:
    """G-REST: loss of the restricted logits on ``rows`` (None = all pairs). Also called "trig loss"."""
    return _ce_rows(restricted_logits(L, keys, p), labels, rows)


def class_balanced_loss(L: Logits, labels: Labels, rows: Rows, p: int) -> Scalar:
    """Cross entropy on ``rows`` with every class weighted equally: the mean over classes of each class's mean
    per-example loss (float64). NaN when some class has no row (catalogue Revision 2, the identity form of
    ``trig_loss_all_equals_train``: on the full grid every class has exactly ``p`` pairs, so for logits that
    depend on ``a + b`` only this equals the all-pairs loss)."""
    per_example = torch.nn.functional.cross_entropy(L[rows].to(torch.float64), labels[rows], reduction="none")
    counts = torch.bincount(labels[rows], minlength=p).to(torch.float64)
    if bool((counts == 0).any()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    sums = torch.zeros(p, dtype=torch.float64).index_add_(0, labels[rows], per_example)
    return (sums / counts).mean()


def key_block_logits(L: Logits, keys: list[int], p: int) -> Logits:
    """The logits with only the 2D Fourier components (over ``a, b``) in the key blocks kept: for each key
    ``k`` the 8 components ``{1, cos w_k, sin w_k}² ∖ {(1, 1)}`` (40 for five keys, NCLSS §4.4), plus the
    constant ``(1, 1)`` component, which is each class's mean over all inputs (the bias correction).
    ``[N, p] -> [N, p]`` float64."""
    F = fourier_basis(p)
    hat = fft2d(grid(L.to(torch.float64), p), F)  # [p, p, classes]
    mask = torch.zeros(p, p, dtype=torch.float64)
    for k in keys:
        idx = torch.tensor([0, 2 * k - 1, 2 * k])
        mask[idx.unsqueeze(1), idx] = 1.0
    mask[0, 0] = 1.0
    return ifft2d(hat * mask.unsqueeze(-1), F).reshape(p * p, -1)


def key_neuron_directions(W_L: Float[Tensor, "p d_mlp"], keys: list[int], p: int) -> Float[Tensor, "d_mlp rank"]:
    """``[d_mlp, 2·|keys|]`` orthonormal basis of the neuron-space directions ``u_k = W_Lᵀ cos_k`` and
    ``v_k = W_Lᵀ sin_k`` (NCLSS eq. 2: ``W_L ≈ Σ_k cos_k u_kᵀ + sin_k v_kᵀ``), for ``W_L [p, d_mlp]``.
    Directions that are zero or dependent on the others add no column (fewer than ``2·|keys|`` then), so
    that nothing outside their span is ever removed."""
    F = fourier_basis(p)
    rows = torch.tensor([r for k in keys for r in (2 * k - 1, 2 * k)])
    U, S, _ = torch.linalg.svd((F[rows] @ W_L.to(torch.float64)).T, full_matrices=False)
    rank = int((S > S.max() * 1e-10).sum()) if S.numel() and float(S.max()) > 0 else 0
    return U[:, :rank]


def singular_values_for(share: float, sv: Float[Tensor, "n_sv *n_ckpt"]) -> Int[Tensor, "*n_ckpt"]:
    """How many of the largest singular values hold ``share`` of the squared norm, per column of
    ``sv [r, n]`` (e.g. one column per checkpoint). ``-> [n]`` int."""
    sq = sv.to(torch.float64).pow(2)
    cum = torch.sort(sq, dim=0, descending=True).values.cumsum(0) / sq.sum(0).clamp_min(1e-300)
    return (cum < share - 1e-12).sum(0) + 1


# ----------------------------------------------------------------------------- weights


def embed_fourier_norms(W_E: Float[Tensor, "d_vocab d_model"], p: int) -> Float[Tensor, " p"]:
    """G-EMBF: squared row norms of ``F @ W_E[:p]`` (the ``=`` row dropped): ``[d_vocab, d] -> [p]``."""
    return fft_tokens(W_E[:p].to(torch.float64), fourier_basis(p)).pow(2).sum(-1)


def embed_singular_values(W_E: Float[Tensor, "d_vocab d_model"], p: int) -> Float[Tensor, " n_sv"]:
    """Singular values of the token embedding without the ``=`` row: ``[d_vocab, d] -> [min(p, d)]``."""
    return torch.linalg.svdvals(W_E[:p].to(torch.float64))


def neuron_logit_map(W_out: Float[Tensor, "d_mlp d_model"], W_U: Float[Tensor, "d_model p"]) -> Float[Tensor, "p d_mlp"]:
    """G-WL in the paper's orientation ``W_L = (W_out W_U)ᵀ``: ``[d_mlp, d], [d, p] -> [p, d_mlp]``."""
    return (W_out.to(torch.float64) @ W_U.to(torch.float64)).T


def gini(c: Float[Tensor, "*shape n"]) -> Float[Tensor, "*shape"]:
    """G-GINI of a nonnegative vector (Hurley & Rickard): ``Σ (2i − n − 1) c_(i) / (n Σ c)``.

    0 for equal entries, ``1 − k/n`` for ``k`` equal nonzero entries among ``n``. ``[..., n] -> [...]``."""
    if (c < 0).any():
        raise ValueError("gini needs nonnegative values")
    c = torch.sort(c.to(torch.float64), dim=-1).values
    n = c.shape[-1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * c).sum(-1) / (n * c.sum(-1).clamp_min(1e-300))


def fourier_row_norms(W: Float[Tensor, "d_vocab d"], p: int) -> Float[Tensor, " p"]:
    """Unsquared norms of the ``p`` rows of ``F @ W[:p]`` (constant row included, cos and sin kept
    separate): the vector whose Gini coefficient the paper tracks. ``[≥p, d] -> [p]``."""
    return fft_tokens(W[:p].to(torch.float64), fourier_basis(p)).norm(dim=-1)


# ----------------------------------------------------------------------------- activations


def trig_variance_fraction(X: Float[Tensor, "batch d"], keys: list[int], p: int) -> Scalar:
    """G-TRIGFRAC: mean over columns of the share of each centred column's squared norm that lies in
    the key ``cos/sin(w_k(a+b))`` directions. ``[N, C] -> []``."""
    # Centring and the projection run in the input's precision (float32 activations stay float32:
    # relative error ~1e-6 on a ratio in [0, 1]); the ratio is formed in float64.
    Xc = X - X.mean(0)
    kept = (key_directions(p, keys, dtype=X.dtype) @ Xc).to(torch.float64).pow(2).sum(0)  # ‖P x‖² = ‖D x‖²
    total = Xc.pow(2).sum(0).to(torch.float64)
    return (kept / total.clamp_min(1e-300)).mean()


def quadratic_fraction(acts: Float[Tensor, "batch d_mlp"], neuron_freq: Int[Tensor, " d_mlp"], p: int, *,
                       power: NeuronPower | Float[Tensor, "p p d_mlp"] | None = None) -> Float[Tensor, " d_mlp"]:
    """G-QUAD: per neuron, share of the centred 2D-Fourier power (squared norm) in the 2×2 block ``{2k−1, 2k}²`` of
    its frequency (``k < 1``, e.g. −1 for a neuron without one: every frequency's block). ``[N, M], [M] -> [M]``;
    ``power``: :func:`~claimlens.core.fourier.neuron_block_power` of ``acts``, if already computed. Raises
    ``ValueError`` on a frequency above ``(p−1)/2`` or a ``power`` of another shape."""
    parts = neuron_block_power(acts, p) if power is None else checked_power(power, acts, p)
    K = (p - 1) // 2
    freq = torch.as_tensor(neuron_freq, dtype=torch.long)
    if (freq > K).any():
        bad = torch.unique(freq[freq > K]).tolist()
        raise ValueError(f"neuron frequencies {bad[:5]} are above (p − 1)/2 = {K} (p = {p})")
    blocks = parts.pair_blocks()  # [K, M]
    own = blocks.gather(0, (freq.clamp(1, K) - 1)[None]).squeeze(0)
    return torch.where(freq >= 1, own, blocks.sum(0)) / parts.total.clamp_min(1e-300)


def clusters_from_frequencies(neuron_freq: Int[Tensor, " d_mlp"], neuron_frac: Float[Tensor, " d_mlp"],
                              threshold: float = 0.85) -> Int[Tensor, " d_mlp"]:
    """G-NFRAC: each neuron's frequency, or −1 where its best block explains less than ``threshold``."""
    return torch.where(neuron_frac >= threshold, neuron_freq, torch.full_like(neuron_freq, -1))


def attention_to_position(pattern: Float[Tensor, "batch n_heads key_pos"]) -> Float[Tensor, "n_heads key_pos"]:
    """G-ATTN: mean attention from the final query to each key position: ``[N, head, pos] -> [head, pos]``."""
    return pattern.to(torch.float64).mean(0)


@dataclass(frozen=True)
class CosFit:
    coefficients: Float[Tensor, " n_keys"]  # α_k = ⟨L, C_k⟩
    fve: float  # fraction of the per-class-centred logit variance explained
    residual: float  # ‖L_c − fit‖ / ‖L_c‖
    fitted_logits: Float[Tensor, "batch p"]  # the fit plus the per-class mean


def cos_sum_fit(L: Logits, keys: list[int], p: int) -> CosFit:
    """G-COS: fit ``L[a,b,c] ≈ Σ_k α_k C_k[a,b,c]``, ``C_k ∝ cos(w_k(a+b−c))`` of unit norm over the
    ``N × p`` cube. The ``C_k`` are orthogonal, so the least-squares fit is the sum of projections."""
    L64 = L.to(torch.float64)
    centred = L64 - L64.mean(0, keepdim=True)  # every C_k has zero mean per class c
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).flatten()  # [N] a + b
    fit = torch.zeros_like(L64)
    coeffs = []
    for k in keys:
        C = torch.cos(2 * math.pi * k * (s[:, None] - a[None, :]) / p)  # [N, p]
        C = C / C.norm()
        alpha = (centred * C).sum()
        coeffs.append(alpha)
        fit = fit + alpha * C
    resid = (centred - fit).norm() / centred.norm().clamp_min(1e-300)
    return CosFit(torch.stack(coeffs) if coeffs else torch.zeros(0), float(1 - resid ** 2), float(resid),
                  fit + L64.mean(0, keepdim=True))


# ----------------------------------------------------------------------------- the final model's algorithm
# (Nanda et al. 2023 §4 and App. A, C): what the final-model claims judge.

@dataclass(frozen=True)
class NeuronClusters:
    assigned_share: float  # share of neurons explained ≥ fve by one frequency
    own_frequency_share: dict[int, float]  # per cluster k: share of its W_L Fourier norm in rows {2k−1, 2k}


def neuron_clusters(mlp_post: Float[Tensor, "batch d_mlp"], W_L: Float[Tensor, "p d_mlp"], p: int, fve: float = 0.85
                    ) -> NeuronClusters:
    """G-NFRAC clusters (NCLSS §4.3): the share of neurons whose best frequency explains ≥ ``fve`` of their
    centred 2D-Fourier norm, and for each cluster the share of its ``W_L`` columns' Fourier norm in its own
    frequency."""
    kf = fo.key_frequencies_from_neurons(mlp_post, p, fo.frequencies(p), min_vote_share=0.0)
    clusters = clusters_from_frequencies(kf.details["neuron_freq"], kf.details["neuron_frac"], fve)
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


def cos_sum_summary(L: Logits, labels: Labels, keys: list[int], p: int) -> CosSumSummary:
    """NCLSS §4.1–4.2: the cos-sum fit of the logits over the key frequencies, its loss, and the share of the
    logits in the key directions."""
    L64 = L.to(torch.float64)
    fit = cos_sum_fit(L64, keys, p)
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


def fourier_ablations(L: Logits, labels: Labels, mlp_post: Float[Tensor, "batch d_mlp"],
                      W_L: Float[Tensor, "p d_mlp"], keys: list[int], p: int) -> FourierAblations:
    """NCLSS §4.4: losses of the final model's logits under the paper's Fourier ablations."""
    L64 = L.to(torch.float64)
    base = cross_entropy_f64(L64, labels).item()
    restricted = restricted_loss(L64, labels, None, keys, p).item()
    blocks = cross_entropy_f64(key_block_logits(L64, keys, p), labels).item()
    W_L = W_L.to(torch.float64)
    Q = key_neuron_directions(W_L, keys, p)
    acts = mlp_post.to(torch.float64)
    in_span = acts @ Q @ Q.T
    nullspace = cross_entropy_f64(L64 - in_span @ W_L.T, labels).item()
    span_only = cross_entropy_f64(L64 - (acts - in_span) @ W_L.T, labels).item()
    return FourierAblations(base, restricted, blocks, nullspace, span_only)


def neuron_logit_map_residual(W_L: Float[Tensor, "p d_mlp"], keys: list[int], p: int) -> float:
    """NCLSS §4.2 eq. 2: ``‖W_L − Π W_L‖_F / ‖W_L‖_F`` with ``Π`` the projection of the logit axis onto the key
    rows ``{2k−1, 2k}`` of the Fourier basis (rank ``2·|keys|``; 10 for five keys). ``W_L`` as
    :func:`~claimlens.families.grokking.metrics.neuron_logit_map` (``[p, M]``): the constant row counts as residual; its
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


def attention_head_fits(pattern: Float[Tensor, "batch n_heads key_pos"], p: int) -> list[HeadFit]:
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


def position_cosine(W_pos: Float[Tensor, "n_ctx d_model"]) -> float:
    """Cosine of the position embeddings of ``a`` and ``b`` (ARENA §1)."""
    return float(torch.nn.functional.cosine_similarity(W_pos[0].double(), W_pos[1].double(), dim=0))


def compare(a: Float[Tensor, "*shape"], b: Float[Tensor, "*shape"]) -> float:
    """G-CMP: ``‖A − B‖² / (‖A‖·‖B‖)``."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).pow(2).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def neuron_swap_asymmetry(mlp_post: Float[Tensor, "batch d_mlp"], p: int) -> float:
    """G-CMP of the neuron activations ``N(a, b)`` against ``N(b, a)``."""
    grid = mlp_post.reshape(p, p, -1)
    return compare(grid, grid.transpose(0, 1))


def per_key_excluded_over_train(excluded_final: Mapping[int, float], train_final: float) -> dict[int, float]:
    """Per key: final excluded loss (that key ablated) over the final train loss."""
    return {k: v / max(train_final, 1e-300) for k, v in excluded_final.items()}


def neuron_logit_map_keys(W_L: Float[Tensor, "p d_mlp"], p: int) -> list[int]:
    """G-KEY rule 3: the key frequencies of the neuron-logit map ``W_L`` (component norm over a quarter of the
    largest; :func:`claimlens.core.fourier.key_frequencies_by_norm`). ``[p, d_mlp] -> keys``."""
    return fo.key_frequencies_by_norm(fft_tokens(W_L, fourier_basis(p)), p, "neuron_logit_map").keys


def neurons_with_a_frequency(mlp_post: Float[Tensor, "batch d_mlp"], p: int, fve: float) -> Bool[Tensor, " d_mlp"]:
    """Whether each neuron is explained by one frequency (its 3×3 block's share of variance ≥ ``fve``; G-KEY rule
    1's argmax frequency, catalogue Revision 2). ``[batch, d_mlp] -> [d_mlp]``."""
    kf = fo.key_frequencies_from_neurons(mlp_post, p, fo.frequencies(p))
    return clusters_from_frequencies(kf.details["neuron_freq"], kf.details["neuron_frac"], fve) >= 1

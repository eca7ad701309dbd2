"""Pizza or clock: the metrics that tell the two modular-addition algorithms apart (claims_catalogue §2, §3.3).

* G-GS gradient symmetricity (Zhong et al. 2023, "The Clock and the Pizza", Def. 4.1): the mean cosine between
  the gradients of an output logit with respect to the two input embeddings. Pizza ≈ 0.99, clock ≈ 0.33.
* G-DI distance irrelevance (Def. 4.2), on the **correct** logit: how little the logit depends on the distance
  ``a − b``. Pizza ≈ 0.17, clock ≈ 0.85.
* G-PIZZA-MODE (devinterp hackathon, ``pizza_vs_clock_exp.py``): the Fourier modes of the activations before the
  unembedding, for a fixed ``a`` and ``b = 0 … p − 1``; a pizza shows the embedding's top mode ``k`` doubled
  (``2k mod p``), a clock only ``k``.
* The distance irrelevance of the largest *incorrect* logit: the variant ``code/train-main.py`` logs, which is the
  ``distance_irrelevance`` column of the source's sweep tables (catalogue Revision 3).
* G-CIRC circularity (``eval-main.ipynb``, "Circularity"): how circular the embedding's first principal components
  are; the source's sweep tables are read only over runs with circularity ≥ 0.9.

Pure functions of tensors: the gradients and activations come from :mod:`claimlens.families.pizza.analysis`. Shapes
(jaxtyping, checked under the test-suite; the vocabulary of ``docs/shapes.md``): ``p`` the modulus, ``batch`` the
``p²`` pairs in the order ``a·p + b``, ``d_vocab_out`` the output classes, ``d_model`` the embedding width, ``d`` any
width, ``n_triples`` the triples of the gradient symmetricity.
"""

import math
import random

import torch
from jaxtyping import Float, Int
from torch import Tensor

GS_TRIPLES = 100  # the source's count (eval-main.ipynb)
GS_SEED = 42  # the source's random.Random(42)


def gs_triples(p: int, n: int = GS_TRIPLES, seed: int = GS_SEED) -> Int[Tensor, "{n} 3"]:
    """``[n, 3]`` long: triples ``(a, b, c)`` drawn uniformly from ``{0 … p−1}³`` with ``random.Random(seed)``
    (``c`` is any output class, not necessarily ``(a + b) mod p``; Def. 4.1)."""
    rng = random.Random(seed)
    return torch.tensor([[rng.randrange(p) for _ in range(3)] for _ in range(n)], dtype=torch.long)


def gradient_symmetricity(grad_a: Float[Tensor, "n_triples d_model"], grad_b: Float[Tensor, "n_triples d_model"]) -> float:
    """G-GS from the gradients ``grad_a``, ``grad_b [n, d]`` of logit ``c`` with respect to the embedding vectors
    of ``a`` and ``b`` (one row per triple): the mean over rows of their cosine similarity, in ``[−1, 1]``.

    Raises ``ValueError`` for mismatched shapes or an all-zero gradient row (the cosine is undefined there)."""
    if grad_a.shape != grad_b.shape or grad_a.dim() != 2:
        raise ValueError(f"gradient_symmetricity needs two [n, d] gradients of one shape; got "
                         f"{list(grad_a.shape)} and {list(grad_b.shape)}")
    a, b = grad_a.double(), grad_b.double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    if bool((na == 0).any() or (nb == 0).any()):
        raise ValueError("a gradient row is exactly zero: the cosine is undefined (is the model constant in its input?)")
    return float(((a * b).sum(1) / (na * nb)).mean())


def sum_difference_matrix(correct_logits: Float[Tensor, "p p"]) -> Float[Tensor, "p p"]:
    """``[p, p]`` indexed ``[a, b]`` → ``[p, p]`` indexed ``[s, d]`` with ``s = (a + b) mod p``, ``d = (a − b) mod p``
    (a bijection for odd ``p``)."""
    p = correct_logits.shape[0]
    a = torch.arange(p).view(-1, 1).expand(p, p)
    b = torch.arange(p).view(1, -1).expand(p, p)
    out = torch.empty_like(correct_logits)
    out[(a + b) % p, (a - b) % p] = correct_logits
    return out


def distance_irrelevance(correct_logits: Float[Tensor, "p p"]) -> float:
    """G-DI from the correct logit ``correct_logits[a, b]`` (the logit of ``(a + b) mod p``) on all ``p²`` pairs:
    for each distance ``d`` the standard deviation over sums ``s``, averaged over ``d``, over the standard
    deviation of all entries (population standard deviations, as ``numpy.std``). Near 0 when the logit depends on
    ``d`` only (pizza), near 1 when it ignores ``d`` (clock).

    Raises ``ValueError`` for a non-square matrix, an even ``p`` (sum and difference do not index the pairs) or
    constant logits."""
    if correct_logits.dim() != 2 or correct_logits.shape[0] != correct_logits.shape[1]:
        raise ValueError(f"distance_irrelevance needs the [p, p] correct logits; got {list(correct_logits.shape)}")
    p = correct_logits.shape[0]
    if p % 2 == 0:
        raise ValueError(f"p = {p} is even: (a + b, a − b) mod p does not index the pairs")
    m = sum_difference_matrix(correct_logits.double())
    total = float(m.std(unbiased=False))
    if total == 0:
        raise ValueError("the correct logit is the same on every pair: distance irrelevance is undefined")
    return float(m.std(dim=0, unbiased=False).mean()) / total


def largest_incorrect_logit(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
                            ) -> Float[Tensor, "p p"]:
    """``[p, p]`` indexed ``[a, b]``: the largest logit of a wrong answer for each pair, from ``logits [p², n_out]``
    (rows in the order ``a·p + b``) and the correct classes ``labels [p²]`` (train-main.py: the correct logit is
    set to −inf, then the top value is taken; float64)."""
    n = logits.shape[0]
    p = math.isqrt(n)
    if logits.dim() != 2 or p * p != n or labels.shape != (n,):
        raise ValueError(f"largest_incorrect_logit needs logits [p², n_out] and labels [p²]; got "
                         f"{list(logits.shape)} and {list(labels.shape)}")
    masked = logits.double().clone()
    masked.scatter_(1, labels.view(-1, 1), -math.inf)
    return masked.max(dim=1).values.view(p, p)


def distance_irrelevance_top_incorrect(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
                                       ) -> float:
    """The distance irrelevance ``code/train-main.py`` (lines 568–592) logs and the source's sweep tables hold in
    their ``distance_irrelevance`` column: :func:`distance_irrelevance`'s formula (mean over ``d`` of the standard
    deviation over ``s``, over the standard deviation of all entries) applied to
    :func:`largest_incorrect_logit` instead of the correct logit (Def. 4.2). A different quantity from Def. 4.2's:
    compare it only with the tables' column (catalogue Revision 3)."""
    return distance_irrelevance(largest_incorrect_logit(logits, labels))


CIRCULARITY_COMPONENTS = 4  # the source averages over the embedding's first four principal components


def circularity(embedding: Float[Tensor, "p d_model"]) -> float:
    """G-CIRC, the source's "Circularity" of an embedding ``[p, d]`` (rows: the input tokens 0 … p−1), in
    ``[0, 1]``: the rows are centred and their first four principal components taken (the coordinates ``v [p]`` of
    the tokens on each, scaled to norm ``1/√p``); for each, ``min(1, 2·max_i |Σ_t v[t·i mod p] e^{2πit/p}|²)`` over
    the strides ``i = 1 … p−1`` (how much of ``v`` one circle, read with step ``i``, explains); the mean over the
    four. 1 for an embedding made of circles, small for a random one. For prime ``p`` the stride maximum is the
    largest Fourier power of ``v`` at a non-zero frequency (``k = i⁻¹ mod p``), so each term is the share of the
    component's variance at its dominant frequency pair.

    Source: catalogue G-CIRC (eval-main.ipynb, "Circularity", PCA of 20 components of which the first four are
    used). Check: 0.99782 on Model A, whose saved output is 0.9978 (tests/test_pizza_clock.py).

    Raises ``ValueError`` when the embedding has fewer than four components of non-zero variance."""
    x = embedding.double()
    p = x.shape[0]
    if x.dim() != 2 or p < 3:
        raise ValueError(f"circularity needs an embedding [p, d] with p ≥ 3 rows; got {list(x.shape)}")
    x = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = CIRCULARITY_COMPONENTS
    if s.numel() < k or not bool((s[:k] > s[0] * 1e-12).all()):
        raise ValueError(f"circularity needs {k} principal components of non-zero variance; the embedding "
                         f"{list(embedding.shape)} has {int((s > s[0] * 1e-12).sum()) if s.numel() else 0}")
    coords = u[:, :k] * s[:k]  # [p, 4]: the tokens' coordinates on each component
    v = coords / (coords.norm(dim=0, keepdim=True) * math.sqrt(p))
    t = torch.arange(p)
    index = (t.view(1, -1) * torch.arange(1, p).view(-1, 1)) % p  # [p − 1 strides, p]
    phase = 2 * math.pi * t.double() / p
    read = v[index]  # [p − 1, p, 4]: v[t·i mod p]
    real = (read * torch.cos(phase).view(1, -1, 1)).sum(1)
    imag = (read * torch.sin(phase).view(1, -1, 1)).sum(1)
    power = (real.pow(2) + imag.pow(2)).max(dim=0).values  # [4]
    return float((2 * power).clamp(max=1.0).mean())


def fourier_modes(x: Float[Tensor, "p d"]) -> Float[Tensor, " p"]:
    """G-PIZZA-MODE magnitudes ``[p]`` of ``x [p, d]`` (rows indexed by a residue): ``m_j = √Σ_d ((Cx)_{j,d}² +
    (Sx)_{j,d}²)`` with the unnormalised DFT matrices ``C_{ij} = cos(2πij/p)``, ``S_{ij} = sin(2πij/p)``."""
    p = x.shape[0]
    t = 2 * math.pi * torch.outer(torch.arange(p, dtype=torch.float64), torch.arange(p, dtype=torch.float64)) / p
    x = x.double()
    return ((torch.cos(t) @ x).pow(2).sum(1) + (torch.sin(t) @ x).pow(2).sum(1)).sqrt()


def fold(mode: int, p: int) -> int:
    """``m → min(m mod p, p − m mod p)``: for real activations modes ``m`` and ``p − m`` have equal magnitude."""
    m = mode % p
    return min(m, p - m)


def pizza_mode_test(embedding: Float[Tensor, "p d_model"], pre_unembed: Float[Tensor, "p d"]) -> dict[str, float]:
    """The hackathon's mode test. ``embedding [p, d_e]``: the input embedding rows (``W_E[:p]``);
    ``pre_unembed [p, d]``: the activations feeding the unembedding for a fixed ``a`` and ``b = 0 … p − 1``.

    Returns ``k`` (the embedding's largest non-constant folded mode), ``k2 = fold(2k)``, and the pre-unembed
    magnitudes ``m_k``, ``m_2k`` and their ratio ``m_2k / m_k`` (> 1: the doubled mode dominates, pizza)."""
    p = embedding.shape[0]
    if pre_unembed.shape[0] != p:
        raise ValueError(f"pre_unembed has {pre_unembed.shape[0]} rows; the embedding has p = {p}")
    emb = fourier_modes(embedding)
    emb[0] = -1.0  # the constant mode is not a frequency
    k = fold(int(emb.argmax()), p)
    k2 = fold(2 * k, p)
    modes = fourier_modes(pre_unembed)
    m_k, m_2k = float(modes[k]), float(modes[k2])
    return {"k": k, "k2": k2, "m_k": m_k, "m_2k": m_2k, "ratio": m_2k / m_k if m_k > 0 else math.inf}


# -- the logit formula fits (Zhong et al. 2023, §4 "Logit FVE"; eval-main.ipynb, commit b78c0e6, cells "Logit FVE"
# and "Accompanying Pizza Logit FVE")

N_PCA_COMPONENTS = 20  # the source's PCA(n_components=20); only the two kept components matter


def circle_embedding(embedding: Float[Tensor, "p d_model"], components: tuple[int, int]) -> Float[Tensor, "p d_model"]:
    """One embedding circle kept, ``[p, d]``: the rows of ``embedding [p, d]`` projected on two of their principal
    components and the row mean added back (the source's ``pca.inverse_transform`` of the PCA coordinates with
    every other component zeroed). Components are numbered from 0 by decreasing variance (full SVD of the centred
    rows, float64); their signs do not matter."""
    x = embedding.double()
    mean = x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    keep = vh[list(components)]  # [2, d]
    return mean + (x - mean) @ keep.T @ keep


def circle_frequency(embedding: Float[Tensor, "p d_model"], components: tuple[int, int]) -> int:
    """The frequency ``k`` (folded, ``1 … (p − 1)/2``) of a circle: the largest non-constant Fourier mode of the
    rows of ``embedding [p, d]`` on the two kept components. The source types it in by hand as ``δ`` (the step
    between neighbours on the circle, ``k = δ⁻¹ mod p``); for a clean circle the two agree."""
    circle = circle_embedding(embedding, components)
    modes = fourier_modes(circle - circle.mean(0, keepdim=True))
    modes[0] = -1.0
    return fold(int(modes.argmax()), embedding.shape[0])


def _angles(p: int, k: int) -> tuple[Float[Tensor, "{p} 1 1"], Float[Tensor, "1 {p} 1"], Float[Tensor, "1 1 {p}"]]:
    w = 2 * math.pi * k / p
    r = torch.arange(p, dtype=torch.float64) * w
    return r.view(p, 1, 1), r.view(1, p, 1), r.view(1, 1, p)  # w·a, w·b, w·c broadcast to [a, b, c]


def clock_template(p: int, k: int) -> Float[Tensor, "{p} {p} {p}"]:
    """``[p, p, p]`` indexed ``(a, b, c)``: ``Q_clock = cos(w(a + b − c))``, ``w = 2πk/p``."""
    a, b, c = _angles(p, k)
    return torch.cos(a + b - c)


def pizza_template(p: int, k: int) -> Float[Tensor, "{p} {p} {p}"]:
    """``[p, p, p]``: the source's ``Q_pizza`` as computed in eval-main.ipynb, ``2|cos(w(a − b)/2)| · (|cos θ| −
    |sin θ|)`` with ``θ = w(a + b − c)/2``. (The paper writes ``|cos(w(a − b)/2)| · cos(w(a + b − c))``; the
    notebook's numbers, which the claim quotes, come from this form.)"""
    a, b, c = _angles(p, k)
    theta = (a + b - c) / 2
    return 2 * torch.cos((a - b) / 2).abs() * (torch.cos(theta).abs() - torch.sin(theta).abs())


def accompanying_template(p: int, k: int) -> Float[Tensor, "{p} {p} {p}"]:
    """``[p, p, p]``: the accompanying circle of the circle at frequency ``k`` (inputs at ``2k``): ``−[cos(2wa −
    wc) + cos(2wb − wc)] = −2 cos(w(a − b)) cos(w(a + b − c))``."""
    a, b, c = _angles(p, k)
    return -(torch.cos(2 * a - c) + torch.cos(2 * b - c))


def logit_fve(logits: Float[Tensor, "p p p"], template: Float[Tensor, "p p p"]) -> float:
    """The source's "Logit FVE" of ``logits [p, p, p]`` (all pairs ``(a, b)``, every output ``c``) by a
    ``template`` of the same shape: each z-scored over all entries (population standard deviation), then
    ``1 − Var(z_logits − z_template) / Var(z_logits)`` (``sklearn.metrics.explained_variance_score``), which
    equals ``2ρ − 1`` for their Pearson correlation ``ρ``: 1 for a perfect fit, −1 for an uncorrelated template,
    −3 for the negated one.

    Raises ``ValueError`` for mismatched shapes or a constant input."""
    if logits.shape != template.shape:
        raise ValueError(f"logits {list(logits.shape)} and template {list(template.shape)} differ in shape")
    x, t = logits.double().flatten(), template.double().flatten()
    sx, st = x.std(unbiased=False), t.std(unbiased=False)
    if sx == 0 or st == 0:
        raise ValueError("a constant logit tensor or template: the explained variance is undefined")
    zx, zt = (x - x.mean()) / sx, (t - t.mean()) / st
    return float(1 - (zx - zt).var(unbiased=False) / zx.var(unbiased=False))

"""The Fourier toolkit of the progress-measures paper (claims_catalogue §2: G-FB, G-FFT1, G-FFT2, G-TRIG, G-KEY).

Dimension names (jaxtyping annotations, checked under the test-suite; the one vocabulary of ``docs/shapes.md``):
``p`` (residues), ``batch`` (the ``p²`` input pairs in grid order, row ``a·p + b``; the docstrings' ``N``), ``d_mlp``
(neurons; the docstrings' ``M``), ``n_freq`` (the frequencies ``1 … (p−1)/2``; the docstrings' ``K``).
Basis order is Nanda/ARENA's: ``Const, cos 1, sin 1, cos 2, …`` (row ``2k−1`` is
``cos k``), every row of unit norm. Pure functions: tensors in, tensors out.
"""

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from jaxtyping import Float
from torch import Tensor


def fourier_basis(p: int, *, dtype: torch.dtype = torch.float64) -> Float[Tensor, "p p"]:
    """``F [p, p]``, rows are orthonormal basis vectors: ``F @ F.T = I``.

    Cached per ``(p, dtype)``: the returned tensor is shared, treat it as read-only."""
    return _fourier_basis(p, dtype)


@lru_cache(maxsize=32)
def _fourier_basis(p: int, dtype: torch.dtype) -> torch.Tensor:
    if p < 3 or p % 2 == 0:
        raise ValueError(f"p must be an odd integer ≥ 3 for the real Fourier basis; got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        rows.append(torch.sin(2 * math.pi * k * x / p))
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).to(dtype)


def basis_names(p: int) -> list[str]:
    names = ["Const"]
    for k in range(1, (p - 1) // 2 + 1):
        names += [f"cos {k}", f"sin {k}"]
    return names


def frequencies(p: int) -> list[int]:
    """All non-constant frequencies ``1 … (p−1)/2``."""
    return list(range(1, (p - 1) // 2 + 1))


def fft1d(x: Float[Tensor, "... p"], basis: Float[Tensor, "p p"]) -> Float[Tensor, "... p"]:
    """Coefficients along the last axis: ``x @ F.T`` (``[..., p] -> [..., p]``)."""
    return x @ basis.T.to(x.dtype)


def fft_tokens(W: Float[Tensor, "p d"], basis: Float[Tensor, "p p"]) -> Float[Tensor, "p d"]:
    """Coefficients of a matrix whose rows are indexed by tokens: ``F @ W`` (``[p, d] -> [p, d]``)."""
    return basis.to(W.dtype) @ W


def fft2d(T: Float[Tensor, "p p *rest"], basis: Float[Tensor, "p p"]) -> Float[Tensor, "p p *rest"]:
    """2D transform over the first two axes: ``T̂[i, j, …] = Σ_ab F[i,a] F[j,b] T[a,b,…]``."""
    F = basis.to(T.dtype)
    # One axis at a time: a single three-operand einsum may contract F ⊗ F first (p⁴ work per trailing entry).
    first = torch.tensordot(F, T, dims=([1], [0]))  # [i, b, …]
    return torch.tensordot(F, first, dims=([1], [1])).transpose(0, 1)  # [i, j, …]


def ifft2d(T_hat: Float[Tensor, "p p *rest"], basis: Float[Tensor, "p p"]) -> Float[Tensor, "p p *rest"]:
    """Inverse of :func:`fft2d` (``F`` is orthonormal): ``T[a, b, …] = Σ_ij F[i,a] F[j,b] T̂[i,j,…]``."""
    return fft2d(T_hat, basis.T)


def grid(x: Float[Tensor, "batch *rest"], p: int) -> Float[Tensor, "p p *rest"]:
    """``[N, …] -> [p, p, …]`` (row ``a·p + b`` to ``[a, b]``)."""
    return x.reshape(p, p, *x.shape[1:])


def trig_directions(p: int, k: int, *, dtype: torch.dtype = torch.float64) -> Float[Tensor, "2 batch"]:
    """``[2, N]``: the unit vectors along ``cos(w_k(a+b))`` and ``sin(w_k(a+b))`` over the grid.

    Built from the basis as in the paper's code: ``(c⊗c − s⊗s)/√2`` and ``(s⊗c + c⊗s)/√2``.
    Cached (shared, read-only).
    """
    if not 1 <= k <= (p - 1) // 2:
        raise ValueError(f"frequency k must be in 1 … {(p - 1) // 2} for p={p}; got {k}")
    return _trig_directions(p, k, dtype)


@lru_cache(maxsize=1024)
def _trig_directions(p: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    F = fourier_basis(p)
    c, s = F[2 * k - 1], F[2 * k]
    u_cos = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
    u_sin = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
    return torch.stack([u_cos, u_sin]).to(dtype)


def key_directions(p: int, keys: list[int], *, dtype: torch.dtype = torch.float64) -> Float[Tensor, "n_dirs batch"]:
    """``[2·len(keys), N]`` orthonormal directions ``cos/sin(w_k(a+b))`` for every key frequency."""
    return _key_directions(p, tuple(keys), dtype)


@lru_cache(maxsize=128)
def _key_directions(p: int, keys: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if not keys:
        return torch.zeros(0, p * p, dtype=dtype)
    return torch.cat([trig_directions(p, k, dtype=dtype) for k in keys])


def project(x: Float[Tensor, "batch *rest"], directions: Float[Tensor, "n_dirs batch"]) -> Float[Tensor, "batch *rest"]:
    """Projection of ``x [N, …]`` onto the span of orthonormal ``directions [m, N]`` along axis 0."""
    D = directions.to(x.dtype)
    coeff = torch.einsum("mn,n...->m...", D, x)
    return torch.einsum("mn,m...->n...", D, coeff)


# ----------------------------------------------------------------------------- key frequencies


@dataclass(frozen=True)
class KeyFrequencies:
    """Key frequencies with the rule and candidate range that produced them (never capped)."""

    keys: list[int]
    rule: str
    candidates: list[int]
    details: dict = field(default_factory=dict, compare=False)


def neuron_fourier_power(acts: Float[Tensor, "batch d_mlp"], p: int) -> Float[Tensor, "p p d_mlp"]:
    """``[p, p, M]`` float64: per neuron, the squared 2D-Fourier coefficients of its activations centred over the
    ``N = p²`` inputs (PMP §4.2 / NCLSS §5.1): every coefficient, the reference for :func:`neuron_block_power`."""
    x = acts.to(torch.float64)
    return fft2d(grid(x - x.mean(0), p), fourier_basis(p, dtype=torch.float64)).pow(2)


@dataclass(frozen=True, eq=False)
class NeuronPower:
    """The parts of each neuron's centred 2D-Fourier power (:func:`neuron_fourier_power`, squared coefficients,
    float64) that the neuron metrics read: G-NFRAC's 3×3 blocks ``{0, 2k−1, 2k}²`` and G-QUAD's 2×2 blocks
    ``{2k−1, 2k}²`` of every frequency ``k = 1 … K``, ``K = (p−1)/2``, and the total.

    ``total [M]``: the sum over all ``p²`` coefficients (= the centred activations' squared norm: the basis is
    orthonormal); ``row0 [p, M]``: coefficients ``(0, j)``; ``col0 [p, M]``: ``(i, 0)``; ``pairs [K, 2, 2, M]``:
    ``(2k−1 + r, 2k−1 + c)``."""

    total: Float[Tensor, " d_mlp"]
    row0: Float[Tensor, "p d_mlp"]
    col0: Float[Tensor, "p d_mlp"]
    pairs: Float[Tensor, "n_freq 2 2 d_mlp"]

    @classmethod
    def from_full(cls, power: Float[Tensor, "p p d_mlp"]) -> "NeuronPower":
        """The parts of a full ``[p, p, M]`` power."""
        p, M = power.shape[0], power.shape[-1]
        K = (p - 1) // 2
        pairs = power[1:, 1:].reshape(K, 2, K, 2, M).diagonal(dim1=0, dim2=2).permute(3, 0, 1, 2)  # [K, 2, 2, M]
        return cls(power.sum((0, 1)), power[0], power[:, 0], pairs)

    def without_constant(self, acts: Float[Tensor, "batch d_mlp"]) -> "NeuronPower":
        """These parts with every neuron that is constant over ``acts [N, M]`` at 0 everywhere, as exact centring
        gives it (a computed transform leaves a rounding residue, ~1e-16 of the value, that would make its shares
        arbitrary), and the constant coefficient ``(0, 0)`` at 0 for all (centring removes it)."""
        flat = acts.amax(0) == acts.amin(0)
        parts = [self.total - self.row0[0], *(t.clone() for t in (self.row0, self.col0, self.pairs))]
        parts[1][0] = 0.0
        parts[2][0] = 0.0
        if bool(flat.any()):
            for t in parts:
                t[..., flat] = 0.0
        return NeuronPower(*parts)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(p, p, M)``: the shape of the full power these parts come from."""
        p, M = self.row0.shape
        return (p, p, M)

    def pair_blocks(self) -> Float[Tensor, "n_freq d_mlp"]:
        """``[K, M]``: the power in each frequency's 2×2 block ``{2k−1, 2k}²`` (G-QUAD)."""
        return self.pairs.sum((1, 2))

    def frequency_blocks(self) -> Float[Tensor, "n_freq d_mlp"]:
        """``[K, M]``: the power in each frequency's 3×3 block ``{0, 2k−1, 2k}²`` (G-NFRAC, G-KEY rule 1)."""
        edge = self.row0[1:] + self.col0[1:]  # [2K, M]: (0, j) and (i, 0), j, i ≠ 0
        return self.row0[0] + edge.view(-1, 2, edge.shape[-1]).sum(1) + self.pair_blocks()


def neuron_block_power(acts: Float[Tensor, "batch d_mlp"], p: int) -> NeuronPower:
    """:class:`NeuronPower` of ``acts [N, M]`` (``N = p²``) without the full transform: one transform along the
    ``a`` axis (``2p³M`` float64 FLOPs, half of the full 2D transform's), then only the coefficients the blocks
    read (``O(p²M)``). Centring changes only the constant coefficient ``(0, 0)`` (every other basis row sums to
    0), so it is set to 0 instead of centring the activations, and the total is the sum of the squares of every
    other coefficient, ``Σ_{i≥1, b} first[i, b]² + Σ_{j≥1} row0[j]`` (Parseval along ``b``): no difference of
    squared sums, so the error grows like (mean / spread) · ε, not its square (2e-10 relative at a ratio of 1e6:
    far below the float32 rounding of the activations themselves); a constant neuron gets 0 everywhere, as
    centring gives it. Equal to ``NeuronPower.from_full(neuron_fourier_power(acts, p))`` to float64
    rounding (``tests/test_metrics.py``)."""
    x = acts.to(torch.float64)
    M, K = x.shape[1], (p - 1) // 2
    F = fourier_basis(p, dtype=torch.float64)
    first = (F @ x.reshape(p, p * M)).view(p, p, M)  # [i, b, M]: transformed along a
    row0 = (F @ first[0]).pow_(2)  # [j, M]: coefficients (0, j)
    col0 = first.sum(1).pow_(2).div_(p)  # [i, M]: coefficients (i, 0); F's row 0 is 1/√p everywhere
    row0[0] = 0.0
    col0[0] = 0.0
    rest = first[1:]
    total = (rest * rest).sum((0, 1)) + row0.sum(0)
    # (2k−1 + r, 2k−1 + c) for each k: rows r of the first transform against basis rows c, one batched product
    lhs = F[1:].view(K, 1, 2, p).expand(K, 2, 2, p).reshape(2 * K, 2, p)
    pairs = torch.bmm(lhs, first[1:].reshape(2 * K, p, M)).pow_(2).view(K, 2, 2, M)
    return NeuronPower(total, row0, col0, pairs).without_constant(acts)


def checked_power(power: NeuronPower | Float[Tensor, "p p d_mlp"], acts: Float[Tensor, "batch d_mlp"], p: int
                  ) -> NeuronPower:
    """``power`` (a :class:`NeuronPower`, or a full ``[p, p, M]`` power, converted, its constant neurons and
    ``(0, 0)`` coefficient at 0 as :func:`neuron_block_power` gives them) if it has the shape of the power of
    ``acts`` at ``p``, else ValueError."""
    if tuple(power.shape) != (p, p, acts.shape[-1]):
        raise ValueError(f"power has shape {tuple(power.shape)}; neuron_fourier_power of activations "
                         f"{tuple(acts.shape)} at p = {p} has shape {(p, p, acts.shape[-1])}")
    return power if isinstance(power, NeuronPower) else NeuronPower.from_full(power).without_constant(acts)


def neuron_frequency_fractions(acts: Float[Tensor, "batch d_mlp"], p: int, candidates: list[int], *,
                               power: NeuronPower | Float[Tensor, "p p d_mlp"] | None = None
                               ) -> Float[Tensor, "n_cand d_mlp"]:
    """``[len(candidates), M]``: per neuron, the share of its centred 2D-Fourier power (squared norm) in the 3×3
    block ``{0, 2k−1, 2k}²`` of each candidate ``k`` (G-KEY rule 1, G-NFRAC). ``acts [N, M]``; ``power``:
    :func:`neuron_block_power` (or :func:`neuron_fourier_power`) of ``acts``, if already computed. Raises
    ``ValueError`` on a candidate outside ``1 … (p−1)/2`` or a ``power`` of another shape."""
    bad = sorted({int(k) for k in candidates if not 1 <= k <= (p - 1) // 2})
    if bad:
        raise ValueError(f"candidate frequencies {bad[:5]} are outside 1 … (p − 1)/2 = {(p - 1) // 2} (p = {p})")
    parts = neuron_block_power(acts, p) if power is None else checked_power(power, acts, p)
    total = parts.total.clamp_min(1e-300)  # the (0,0) term is 0 after centring
    k = torch.as_tensor(list(candidates), dtype=torch.long).reshape(-1)
    return parts.frequency_blocks()[k - 1] / total  # [k, M]


def key_frequencies_from_neurons(acts: Float[Tensor, "batch d_mlp"], p: int, candidates: list[int] | None = None, *,
                                 min_vote_share: float = 0.05,
                                 power: NeuronPower | Float[Tensor, "p p d_mlp"] | None = None) -> KeyFrequencies:
    """G-KEY rule 1 with a vote share (catalogue Revision 2): each neuron's frequency is the argmax of its
    3×3 blocks; a frequency is a key when at least ``min_vote_share`` of the live neurons have it as their
    argmax (0 gives the unfiltered rule: every distinct argmax).

    Neurons that never vary over the ``N`` inputs (dead or constant) have no frequency: they get
    frequency −1 and do not vote. ``candidates`` defaults to PMP's ``1 … p//2 − 1``; ``power``:
    :func:`neuron_block_power` of ``acts``, if already computed (``ValueError`` as
    :func:`neuron_frequency_fractions`). Why 5%: unfiltered,
    the rule returns 10 keys on the author's wd 0.1 model, 5 of them spurious (1–10 votes each, ablating
    them changes the loss by ≤ 6%), while real keys have 54–209 votes; the paper's smallest cluster is 44
    of 512 neurons (8.6%)."""
    candidates = list(range(1, p // 2)) if candidates is None else list(candidates)
    fracs = neuron_frequency_fractions(acts, p, candidates, power=power)
    alive = acts.amax(0) > acts.amin(0)  # varies over the inputs
    neuron_freq = torch.where(alive, torch.tensor(candidates)[fracs.argmax(0)], torch.tensor(-1))
    live = neuron_freq[alive]
    votes = {int(k): int((live == k).sum()) for k in torch.unique(live).tolist()}
    n_live = max(int(alive.sum()), 1)
    keys = sorted(k for k, n in votes.items() if n / n_live >= min_vote_share)
    return KeyFrequencies(keys, "neuron_cluster_argmax", candidates,
                          {"neuron_freq": neuron_freq, "neuron_frac": torch.where(alive, fracs.max(0).values, 0.0),
                           "dead_neurons": int((~alive).sum()), "votes": votes, "min_vote_share": min_vote_share})


def frequency_norms(coef: Float[Tensor, "p *rest"], p: int) -> Float[Tensor, " n_freq"]:
    """``[(p−1)/2]``: squared norm per frequency ``k`` of row-wise coefficients ``coef [p, …]``
    (rows ``2k−1`` and ``2k`` together)."""
    sq = coef.to(torch.float64).pow(2).flatten(1).sum(1)
    return sq[1::2] + sq[2::2]


def key_frequencies_by_norm(coef: Float[Tensor, "p *rest"], p: int, rule: str, frac_of_max: float = 0.25
                            ) -> KeyFrequencies:
    """G-KEY rules 2 (embedding, ``coef = F @ W_E``) and 3 (neuron-logit map, ``coef = F @ W_L``): keep ``k``
    whose component norm (unsquared, cos and sin together) exceeds ``frac_of_max`` of the largest."""
    norms = frequency_norms(coef, p).sqrt()
    keys = [k for k, n in zip(frequencies(p), norms.tolist()) if n > frac_of_max * float(norms.max())]
    return KeyFrequencies(keys, rule, frequencies(p), {"norms": norms, "frac_of_max": frac_of_max})

"""Low rank of training trajectories (claims_catalogue §3.4, §3.7; G-CKSVD, G-PTLPCA): singular values of a matrix
with one row per checkpoint, computed through its ``S × S`` Gram matrix so that the ``[S, n_params]`` matrix never
has to be held in memory, a column-permutation null, and the PCA trajectory of per-example losses with its turning
angles. Pure functions of tensors; float64 throughout. The jaxtyping annotations (checked under the test-suite; the
vocabulary of ``docs/shapes.md``) call the rows ``n_ckpt`` (the docstrings' ``S``: one row per checkpoint).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

PERMUTE_COLUMNS = 4096  # columns the null permutes at a time (its temporaries: [S, 4096] index and value arrays)


class GramAccumulator:
    """``G = X Xᵀ`` of a matrix ``X [S, n]`` fed in column blocks (``add(block [S, c])``), and the Gram matrix of
    its column-permutation null: every column's entries permuted independently over the rows, with a seeded
    generator (``null=True``). ``row_scale [S]`` multiplies each row first (``1 / ‖row‖`` to normalise rows, whose
    norms the first pass over the columns gives: :func:`row_norms`)."""

    def __init__(self, n_rows: int, *, null: bool = False, seed: int = 0,
                 row_scale: Float[Tensor, " {n_rows}"] | None = None):
        self.gram = torch.zeros(n_rows, n_rows, dtype=torch.float64)
        self.null = null
        self.generator = torch.Generator().manual_seed(seed)
        self.row_scale = None if row_scale is None else row_scale.double().view(-1, 1)
        self.n_columns = 0

    def add(self, block: Float[Tensor, "n_ckpt n_cols"]) -> None:
        """Add the columns ``block [S, c]`` (any float dtype; not modified). Working memory: the block in float64 and,
        for the null, its ``[S, c]`` float64 draws; the permutation is applied in place, ``PERMUTE_COLUMNS`` columns
        at a time (each column's own permutation, so the result does not depend on that width)."""
        x = block.to(torch.float64, copy=True)
        if self.row_scale is not None:
            x.mul_(self.row_scale)
        if self.null:
            draws = torch.rand(x.shape, generator=self.generator, dtype=torch.float64)
            for start in range(0, x.shape[1], PERMUTE_COLUMNS):
                cols = slice(start, start + PERMUTE_COLUMNS)
                x[:, cols] = x[:, cols].gather(0, draws[:, cols].argsort(dim=0))
            del draws
        self.gram += x @ x.T
        self.n_columns += x.shape[1]


def row_norms(gram: Float[Tensor, "n_ckpt n_ckpt"]) -> Float[Tensor, " n_ckpt"]:
    """``‖row_i‖`` from the Gram matrix's diagonal."""
    return gram.diagonal().clamp_min(0).sqrt()


def normalise_rows(gram: Float[Tensor, "n_ckpt n_ckpt"]) -> Float[Tensor, "n_ckpt n_ckpt"]:
    """The Gram matrix of the row-normalised matrix: ``G_ij / (‖row_i‖ ‖row_j‖)`` (rows of norm 0 left at 0)."""
    n = row_norms(gram)
    inv = torch.where(n > 0, 1 / n, torch.zeros_like(n))
    return gram * inv[:, None] * inv[None, :]


def centre(gram: Float[Tensor, "n_ckpt n_ckpt"]) -> Float[Tensor, "n_ckpt n_ckpt"]:
    """The Gram matrix after subtracting the mean row: ``H G H`` with ``H = I − 11ᵀ/S``."""
    S = gram.shape[0]
    H = torch.eye(S, dtype=gram.dtype) - 1.0 / S
    return H @ gram @ H


def singular_values(gram: Float[Tensor, "n_ckpt n_ckpt"]) -> Float[Tensor, " n_ckpt"]:
    """The singular values of ``X`` from ``G = X Xᵀ``, largest first, ``[S]`` (``√`` of the eigenvalues, clamped at
    0: rounding makes the smallest slightly negative)."""
    eig = torch.linalg.eigvalsh((gram + gram.T) / 2)
    return eig.clamp_min(0).sqrt().flip(0)


def mean_row_cosine(gram: Float[Tensor, "n_ckpt n_ckpt"]) -> float:
    """``|cos|`` between the first right singular vector of ``X`` (its component 0, uncentred) and its mean row
    ``m = (1/S) Σ_i X_i``, from ``G = X Xᵀ [S, S]`` alone: with ``u₀`` the top eigenvector of ``G`` and ``σ₀²`` its
    eigenvalue, ``cos = σ₀ (u₀ · 1) / √(1ᵀ G 1)``. Near 1 when the uncentred component 0 is the mean row (the
    commenter's point on the post on the SVD of gradient updates); 0 for a matrix whose mean row is 0."""
    g = (gram.double() + gram.double().T) / 2
    ones = torch.ones(g.shape[0], dtype=torch.float64)
    total = float(ones @ g @ ones)
    if total <= 0:
        return 0.0
    eig, vec = torch.linalg.eigh(g)
    sigma0 = float(eig[-1].clamp_min(0).sqrt())
    return min(1.0, abs(sigma0 * float(vec[:, -1] @ ones)) / total ** 0.5)


def count_above(sv: Float[Tensor, " n_sv"], fraction: float) -> int:
    """How many singular values are ≥ ``fraction`` × the largest (the post's count at 10%; its footnote's 5%/15%)."""
    if sv.numel() == 0 or float(sv[0]) == 0:
        return 0
    return int((sv >= fraction * sv[0]).sum())


def pca_trajectory(matrix: Float[Tensor, "n_ckpt n_cols"], k: int = 2
                   ) -> tuple[Float[Tensor, "n_ckpt n_comp"], Float[Tensor, " n_comp"]]:
    """PCA of the rows of ``matrix [S, N]`` (columns centred): the scores ``[S, k]`` and the fraction of variance
    each of the ``k`` components explains ``[k]``. Through the ``S × S`` Gram matrix of the centred rows."""
    x = matrix.double()
    x = x - x.mean(0, keepdim=True)
    gram = x @ x.T
    eig, vec = torch.linalg.eigh((gram + gram.T) / 2)
    eig, vec = eig.flip(0).clamp_min(0), vec.flip(1)
    scores = vec[:, :k] * eig[:k].sqrt()
    total = float(eig.sum())
    return scores, (eig[:k] / total if total > 0 else torch.zeros(k, dtype=torch.float64))


def turning_angles(points: Float[Tensor, "n_ckpt d"]) -> Float[Tensor, " n_ckpt-2"]:
    """``[S − 2]`` angles in degrees between successive displacement vectors of a trajectory ``points [S, d]``:
    entry ``i`` is the turn at point ``i + 1`` (0: straight on, 180: straight back). A zero-length step turns by 0."""
    d = points[1:] - points[:-1]
    a, b = d[:-1], d[1:]
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = torch.where(norms > 0, (a * b).sum(1) / norms.clamp_min(1e-300), torch.ones_like(norms))
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def largest_turns(angles: Float[Tensor, " n_turns"], epochs: Int[Tensor, " n_turns+2"], n: int = 2
                  ) -> list[tuple[int, float]]:
    """The ``n`` largest turns as ``(epoch of the turning point, angle)``, largest first; ``epochs [S]`` are the
    trajectory's points (a turn at point ``i + 1`` is at ``epochs[i + 1]``)."""
    order = angles.argsort(descending=True)[:n]
    return [(int(epochs[int(i) + 1]), float(angles[i])) for i in order]


def log_loss(losses: Float[Tensor, "*shape"], floor: float = 1e-12) -> Float[Tensor, "*shape"]:
    """``log10`` of per-example losses (values span 1e-8 … 30; catalogue §3.4), floored at ``floor``."""
    return losses.double().clamp_min(floor).log10()


__all__ = ["GramAccumulator", "centre", "count_above", "largest_turns", "log_loss", "mean_row_cosine",
           "normalise_rows", "pca_trajectory", "row_norms", "singular_values", "turning_angles"]

"""Independent, deliberately naive reference implementations (explicit loops, direct sums, Python floats).

They share no code with ``claimlens.families.grokking.metrics``: each is written from the definition in
shared/claims_catalogue.md §2, for small p only.
"""

from __future__ import annotations

import math


def basis(p):
    rows = [[1.0] * p]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append([math.cos(2 * math.pi * k * x / p) for x in range(p)])
        rows.append([math.sin(2 * math.pi * k * x / p) for x in range(p)])
    return [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in rows]


def dft2(T, p):
    """T[a][b] (scalars) -> coefficients [i][j] by the direct double sum."""
    F = basis(p)
    return [[sum(F[i][a] * F[j][b] * T[a][b] for a in range(p) for b in range(p)) for j in range(p)] for i in range(p)]


def ce(rows, labels):
    """Mean cross entropy with a hand-written log-sum-exp, in Python floats (float64)."""
    total = 0.0
    for row, y in zip(rows, labels):
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[y]
    return total / len(rows)


def trig_components(L, p, keys):
    """For each output class, the least-squares fit of the column on {cos(w_k(a+b)), sin(w_k(a+b))}_k.

    Over the full grid these functions are orthogonal with squared norm p²/2, so each coefficient is
    ⟨column, f⟩ / (p²/2)."""
    N = p * p
    out = [[0.0] * len(L[0]) for _ in range(N)]
    for k in keys:
        for f in (math.cos, math.sin):
            g = [f(2 * math.pi * k * ((n // p) + (n % p)) / p) for n in range(N)]
            for c in range(len(L[0])):
                coeff = sum(L[n][c] * g[n] for n in range(N)) / (N / 2)
                for n in range(N):
                    out[n][c] += coeff * g[n]
    return out


def excluded_loss(L, labels, train_rows, p, keys):
    kept = trig_components(L, p, keys)
    edited = [[L[n][c] - kept[n][c] for c in range(len(L[0]))] for n in range(len(L))]
    return ce([edited[n] for n in train_rows], [labels[n] for n in train_rows])


def restricted_loss(L, labels, rows, p, keys):
    kept = trig_components(L, p, keys)
    C = len(L[0])
    shift = [sum(L[n][c] - kept[n][c] for n in range(len(L))) / len(L) for c in range(C)]
    edited = [[kept[n][c] + shift[c] for c in range(C)] for n in range(len(L))]
    return ce([edited[n] for n in rows], [labels[n] for n in rows])


def gini_hurley_rickard(c):
    """1 − 2 Σ_i (c_(i)/‖c‖₁)(n − i + ½)/n with c sorted ascending, i = 1 … n."""
    c = sorted(c)
    n, s = len(c), sum(c)
    return 1 - 2 * sum((v / s) * (n - i + 0.5) / n for i, v in enumerate(c, start=1))


def trig_fraction(X, p, keys):
    N, C = len(X), len(X[0])
    means = [sum(X[n][c] for n in range(N)) / N for c in range(C)]
    Xc = [[X[n][c] - means[c] for c in range(C)] for n in range(N)]
    kept = trig_components(Xc, p, keys)
    ratios = []
    for c in range(C):
        num = sum(kept[n][c] ** 2 for n in range(N))
        den = sum(Xc[n][c] ** 2 for n in range(N))
        ratios.append(num / den)
    return sum(ratios) / C


def key_block_logits(L, p, keys):
    """Each class column as a function of (a, b), projected onto the 2D basis functions F[i](a)·F[j](b) with
    i, j ∈ {0, 2k−1, 2k} for a key k (the constant (0, 0) included), by direct sums."""
    F = basis(p)
    rows = {0}
    pairs = {(0, 0)}
    for k in keys:
        idx = (0, 2 * k - 1, 2 * k)
        pairs |= {(i, j) for i in idx for j in idx}
        rows |= set(idx)
    C = len(L[0])
    out = [[0.0] * C for _ in range(p * p)]
    for c in range(C):
        for i, j in pairs:
            coeff = sum(F[i][n // p] * F[j][n % p] * L[n][c] for n in range(p * p))
            for n in range(p * p):
                out[n][c] += coeff * F[i][n // p] * F[j][n % p]
    return out


def gram_schmidt(vectors):
    """Orthonormal basis of the span of ``vectors`` (lists), classical Gram–Schmidt in Python floats."""
    out = []
    for v in vectors:
        w = list(v)
        for q in out:
            d = sum(a * b for a, b in zip(w, q))
            w = [a - d * b for a, b in zip(w, q)]
        norm = math.sqrt(sum(a * a for a in w))
        if norm > 1e-9:
            out.append([a / norm for a in w])
    return out


def key_neuron_projector(W_L, p, keys):
    """Projector (as a matrix, lists) onto span{Σ_c W_L[c][m] f(c)} for f = the cos/sin basis rows of each key."""
    F = basis(p)
    M = len(W_L[0])
    vecs = [[sum(W_L[c][m] * F[r][c] for c in range(p)) for m in range(M)]
            for k in keys for r in (2 * k - 1, 2 * k)]
    Q = gram_schmidt(vecs)
    return [[sum(q[a] * q[b] for q in Q) for b in range(M)] for a in range(M)]


def neuron_block_shares(column, p, k):
    """One neuron's activations over the p² inputs (row a·p + b) -> (share of its centred 2D-Fourier power in the
    3×3 block {0, 2k−1, 2k}² (G-NFRAC), share in the 2×2 block {2k−1, 2k}² (G-QUAD)); k < 1: the 2×2 blocks of
    every frequency summed."""
    mean = sum(column) / len(column)
    T = [[column[a * p + b] - mean for b in range(p)] for a in range(p)]
    power = [[c * c for c in row] for row in dft2(T, p)]
    total = sum(sum(row) for row in power)
    if k >= 1:
        three = [0, 2 * k - 1, 2 * k]
        two = [2 * k - 1, 2 * k]
        return (sum(power[i][j] for i in three for j in three) / total,
                sum(power[i][j] for i in two for j in two) / total)
    every = sum(power[i][j] for f in range(1, (p - 1) // 2 + 1) for i in (2 * f - 1, 2 * f) for j in (2 * f - 1, 2 * f))
    return None, every / total

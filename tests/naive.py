"""Independent, deliberately naive reference implementations (explicit loops, direct sums, Python floats).

They share no code with ``claimlens.metrics``: each is written from the definition in
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

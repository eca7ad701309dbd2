"""Weight norms, shared by the families that track them (Nanda et al. 2023's G-SSW; the MLP of "Grokking with weight
decay")."""

from collections.abc import Mapping

import torch
from jaxtyping import Shaped
from torch import Tensor


def sum_sq_weights(params: Mapping[str, Shaped[Tensor, "..."]]) -> dict[str, float]:
    """G-SSW: ``Σ θ²`` per named parameter and ``"total"``."""
    out = {name: float(t.to(torch.float64).pow(2).sum()) for name, t in params.items()}
    out["total"] = sum(out.values())
    return out

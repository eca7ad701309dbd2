"""The size of a run's weights at every checkpoint: Σθ² and Σ|θ| over every parameter (catalogue §3.5
``mlp_weight_norms_decline_after_memorisation``; G-SSW). Any model kind; a checkpoint read is the whole cost (tens
of milliseconds for a run of the MLP family): computed on demand, not cached."""

from __future__ import annotations

from claimlens.core.series import Series
from claimlens.core.weights import sum_sq_weights


def weight_norms(run) -> tuple[Series, Series]:
    """``(Σθ², Σ|θ|)`` of ``run`` over its checkpoints, one row each (float64; frozen parameters included, as the
    source sums every tensor of ``model.parameters()``)."""
    sq, ab = [], []
    for epoch in run.epochs:
        params = run.checkpoint(epoch)
        sq.append(sum_sq_weights(params)["total"])
        ab.append(sum(float(t.double().abs().sum()) for t in params.values()))
    return (Series.of("sum of squared weights Σθ²", run.epochs, sq),
            Series.of("sum of absolute weights Σ|θ|", run.epochs, ab))

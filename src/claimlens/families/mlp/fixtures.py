"""The mlp family's pytest fixtures, and the built-in runs it judges in a plain ``pytest claims/``.

weight_norms: the weight norms of an MLP of 'Grokking with weight decay' over its checkpoints.
Registered by the claimlens plugin; importing this module imports no torch.
"""

from __future__ import annotations

import pytest

from claimlens.plugin.fixtures import needs_mlp

# Built-in specs (fixtures/*.toml) this family's claims judge in a plain session, besides the default run
# (which every family's claims judge).
BUILTIN_RUNS = ("mlp_sum.toml", "mlp_concat.toml")


@pytest.fixture(scope="session")
def weight_norms(run):
    """``(Σθ², Σ|θ|)`` of an MLP run at every checkpoint (:func:`claimlens.families.mlp.analysis.weight_norms`)."""
    needs_mlp(run, "the claim is about the MLP of 'Grokking with weight decay'")
    from claimlens.families.mlp.analysis import weight_norms as norms

    return norms(run)

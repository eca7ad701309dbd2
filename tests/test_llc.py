"""The LLC estimator on models whose learning coefficient is known, and its diagnostics."""

import pytest
import torch

from claimlens.metrics.llc import SGLDConfig, estimate_llc


def linear_regression(d=10, n=2000, seed=0):
    """A regular model: Gaussian-noise linear regression; LLC = d/2 at the least-squares solution."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = X @ torch.randn(d, generator=gen) + 0.5 * torch.randn(n, generator=gen)
    w_star = torch.linalg.lstsq(X, y[:, None]).solution.flatten()

    def loss(params, rows):
        r = y[rows] - X[rows] @ params["w"]
        return 0.5 * (r * r).mean()

    return loss, {"w": w_star}, n


def quartic(d=4):
    """A singular model: K(w) = Σ w_i⁴ at w* = 0. Under exp(−nβ K), E[nβ Σ w_i⁴] = d/4 exactly (γ → 0),
    so λ = d/4, half the regular d/2."""

    def loss(params, rows):
        return params["w"].pow(4).sum() + 0 * rows.sum()

    return loss, {"w": torch.zeros(d)}, 1000


def test_regular_model_gives_half_the_parameter_count():
    loss, params, n = linear_regression(d=10)
    # ε as large as keeps the discretisation bias small while the MALA acceptance stays in the healthy
    # band (< 0.99): ε = 1e-4 gives acceptance 0.990, 1.5e-4 gives 0.982 and +3.7%, 4e-4 gives +11%.
    cfg = SGLDConfig(epsilon=1.5e-4, gamma=1.0, nbeta=1000.0, num_chains=8, num_draws=2000, num_burnin=500, seed=1)
    r = estimate_llc(loss, params, n, cfg)
    assert abs(r.mean - 5.0) / 5.0 < 0.05, f"LLC {r.mean:.3f} ± {r.std:.3f}, expected d/2 = 5"
    assert r.healthy, r.problems
    assert r.traces.shape == (8, 2000) and r.config["nbeta"] == 1000.0


def test_singular_model_gives_its_known_coefficient():
    loss, params, n = quartic(d=4)
    cfg = SGLDConfig(epsilon=2e-4, gamma=1.0, nbeta=1e4, num_chains=16, num_draws=4000, num_burnin=2000, seed=2)
    r = estimate_llc(loss, params, n, cfg)
    assert abs(r.mean - 1.0) / 1.0 < 0.10, f"LLC {r.mean:.3f} ± {r.std:.3f}, expected d/4 = 1 (regular would be 2)"


def test_chains_are_vectorised_and_seeded():
    loss, params, n = linear_regression(d=3, n=200)
    cfg = SGLDConfig(epsilon=1e-4, gamma=10.0, nbeta=50.0, num_chains=3, num_draws=50, num_burnin=10, seed=5)
    a, b = estimate_llc(loss, params, n, cfg), estimate_llc(loss, params, n, cfg)
    assert torch.equal(a.traces, b.traces)
    assert not torch.equal(a.traces[0], a.traces[1]), "chains draw independent noise"
    mini = estimate_llc(loss, params, n, SGLDConfig(**{**cfg.__dict__, "batch_size": 32}))
    assert mini.config["batch_size"] == 32 and torch.isfinite(mini.traces).all()


def test_default_nbeta_is_n_over_log_n():
    assert SGLDConfig().resolved_nbeta(1000) == pytest.approx(1000 / 6.907755, rel=1e-6)
    assert SGLDConfig(batch_size=128).resolved_nbeta(1000) == pytest.approx(26.38, abs=0.01)


def test_divergence_is_diagnosed_with_what_to_change():
    loss, params, n = linear_regression(d=5)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=1.0, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=30,
                                                 num_burnin=0), where="epoch 400")
    assert not r.healthy
    assert any("epoch 400" in p and "smaller epsilon" in p for p in r.problems), r.problems


def test_a_point_that_is_not_a_minimum_is_diagnosed():
    loss, params, n = linear_regression(d=5)
    away = {"w": params["w"] + 1.0}  # the loss falls when the chains move back towards w*
    r = estimate_llc(loss, away, n, SGLDConfig(epsilon=1e-4, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=200,
                                               num_burnin=50))
    assert any("≤ 0" in p and "raise gamma" in p for p in r.problems), r.problems
    assert any("running mean" in p for p in r.problems), r.problems


def test_too_short_burn_in_is_diagnosed_as_non_stationary():
    loss, params, n = linear_regression(d=10)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=2e-6, gamma=1.0, nbeta=1000.0, num_chains=8, num_draws=1000,
                                                 num_burnin=0))
    assert r.mean < 0.7 * 5.0  # still climbing towards d/2 = 5: the estimate is biased low
    assert any("not flattened" in p and "burn-in" in p for p in r.problems), r.problems


def test_acceptance_near_one_is_diagnosed():
    loss, params, n = linear_regression(d=5)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=1e-7, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=100,
                                                 num_burnin=0), where="epoch 7")
    assert any("epoch 7" in p and "larger epsilon" in p for p in r.problems), r.problems


def test_orthogonal_restriction_keeps_chains_off_the_slope():
    """Started off the minimum, plain SGLD slides towards lower loss (a negative estimate); with the NV
    restriction the displacement along the starting gradient is removed and far less loss is lost."""
    loss, params, n = linear_regression(d=5)
    grad = torch.func.grad(loss)(params, torch.arange(n))["w"]
    away = {"w": params["w"] + 0.3 * grad / grad.norm()}  # displaced along (minus) the descent direction
    cfg = dict(epsilon=1e-4, gamma=1.0, nbeta=1000.0, num_chains=4, num_draws=300, num_burnin=50)
    plain = estimate_llc(loss, away, n, SGLDConfig(**cfg))
    restricted = estimate_llc(loss, away, n, SGLDConfig(**cfg, orth_grad=True))
    assert plain.mean < 0
    assert restricted.mean > plain.mean + 0.5 * abs(plain.mean), (plain.mean, restricted.mean)
    assert restricted.config["orth_grad"] is True

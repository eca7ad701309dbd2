"""The written-out loss and gradient of the LLC sampler equal autograd of the plain forward, and the sampler gives
the same traces with either engine."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad_and_value, vmap

from claimlens import models
from claimlens.config import MLPConfig, TransformerConfig
from claimlens.families.llc.metrics import SGLDConfig, estimate_llc
from claimlens.models.stacked import loss_and_grad_fn


def data(p: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, p, (n,), generator=gen), torch.randint(0, p, (n,), generator=gen)
    return torch.stack([a, b, torch.full((n,), p)], 1), (a + b) % p


def stacked(cfg: TransformerConfig | MLPConfig, p: int, chains: int, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """``chains`` different parameter sets (random weights *and* biases), stacked on a leading axis."""
    gen = torch.Generator().manual_seed(seed)
    shapes = models.param_shapes(cfg, p)
    return {k: (torch.randn(chains, *s, generator=gen) / math.sqrt(s[-1])).to(dtype) for k, s in shapes.items()}


def reference(cfg, x, y):
    """The naive reference: autograd of the plain forward's float64 cross entropy, vmapped over chains."""
    def loss(params, rows):
        return torch.nn.functional.cross_entropy(models.forward(params, x[rows], cfg).logits.double(), y[rows])

    return vmap(grad_and_value(loss))


def assert_same(cfg: TransformerConfig | MLPConfig, p: int, chains: int, batch: int, seed: int, dtype=torch.float64) -> None:
    """The engine's loss and gradients against autograd on the same weights. In float64 (the default) both are
    exact to rounding, so the tolerance is 1e-9 of the gradient's scale: a wrong term cannot hide in it. In
    float32 (the sampler's dtype) a confident model's ``softmax − onehot`` loses relative precision, so the
    tolerance there is 1e-4."""
    x, y = data(p, 40, seed)
    w = stacked(cfg, p, chains, seed, dtype)
    rows = torch.randint(0, len(y), (chains, batch), generator=torch.Generator().manual_seed(seed + 1))
    g_ref, L_ref = reference(cfg, x, y)(w, rows)
    out = {k: torch.full_like(v, float("nan")) for k, v in w.items()}
    L = loss_and_grad_fn(cfg, x, y)(w, rows, out)
    assert L.shape == (chains,) and L.dtype == torch.float64
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(L, L_ref, rtol=tol * 10, atol=tol)
    for name in w:
        # relative to the gradient's overall scale: b_K's true gradient is exactly zero (softmax is shift-invariant)
        scale = max(float(g_ref[name].abs().max()), max(float(g.abs().max()) for g in g_ref.values()) * 1e-3)
        err = float((out[name] - g_ref[name].to(dtype)).abs().max()) / scale
        assert err < tol, f"{name}: gradient differs from autograd by {err:.2e} of its scale"


TRANSFORMERS = st.builds(
    TransformerConfig, d_model=st.sampled_from([8, 16]), n_heads=st.sampled_from([1, 2, 4]),
    d_head=st.sampled_from([4, 8]), d_mlp=st.sampled_from([8, 24]), act_fn=st.sampled_from(["relu", "gelu"]),
    attn_bias=st.booleans(), unembed_bias=st.booleans(), attn_rate=st.sampled_from([1.0, 0.0, 0.6]),
    equals_token=st.booleans())  # with '=': one query row (the table path); without: p query rows
MLPS = st.builds(
    MLPConfig, d_embed=st.sampled_from([3, 6]),
    hidden=st.sampled_from([(8,), (12, 5), (4, 4, 4)]), combine=st.sampled_from(["sum", "concat"]),
    act_fn=st.sampled_from(["relu", "gelu"]))


@settings(max_examples=25, deadline=None)
@given(cfg=st.one_of(TRANSFORMERS, MLPS), p=st.sampled_from([5, 11]), chains=st.integers(1, 3),
       batch=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_loss_and_gradient_equal_autograd_of_the_plain_forward(cfg, p, chains, batch, seed):
    assert_same(cfg, p, chains, batch, seed)


@pytest.mark.parametrize("cfg", [
    TransformerConfig(d_model=16, n_heads=4, d_head=8, d_mlp=24),
    TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=24, attn_rate=0.0, equals_token=False),
    MLPConfig(d_embed=6, hidden=(12, 5), combine="concat", act_fn="gelu"),
], ids=["transformer", "pizza", "mlp"])
def test_float32_gradients_are_close_to_autograd(cfg):
    """The sampler runs in float32: the same check at float32 precision on fixed, not overconfident, models."""
    assert_same(cfg, 11, 3, 9, 5, dtype=torch.float32)


def test_only_the_requested_gradients_are_written():
    cfg = TransformerConfig(d_model=8, n_heads=2, d_head=4, d_mlp=8)
    x, y = data(7, 20, 0)
    w = stacked(cfg, 7, 2, 0)
    out = {"blocks.0.mlp.W_in": torch.zeros(2, 8, 8)}
    loss_and_grad_fn(cfg, x, y)(w, torch.zeros(2, 3, dtype=torch.long), out)
    assert out["blocks.0.mlp.W_in"].abs().sum() > 0


def test_an_activation_without_a_written_out_derivative_is_refused():
    with pytest.raises(ValueError, match="no written-out derivative for act_fn 'tanh'"):
        loss_and_grad_fn(MLPConfig(act_fn="tanh"), *data(5, 4, 0))


@pytest.mark.parametrize("batch_size, orth_grad", [(16, False), (None, False), (16, True)])
def test_both_engines_give_the_same_chains(batch_size, orth_grad):
    """Same seed, same minibatches, same noise: the traces of the written-out and the autograd engine agree to
    float rounding, in minibatch and full-batch mode and with the orthogonal restriction."""
    cfg = TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32)
    p = 11
    x, y = data(p, 60, 3)
    params = models.init_params(cfg, p, 0)
    frozen = models.frozen_params(cfg, p)
    sampled = {k: v for k, v in params.items() if k not in frozen}
    fixed = {k: v for k, v in params.items() if k in frozen}

    def loss(w, rows):
        return torch.nn.functional.cross_entropy(models.forward({**w, **fixed}, x[rows], cfg).logits.double(), y[rows])

    engine = loss_and_grad_fn(cfg, x, y)
    config = SGLDConfig(epsilon=1e-4, gamma=100.0, num_chains=3, num_draws=60, num_burnin=20, batch_size=batch_size,
                        orth_grad=orth_grad, seed=4)

    def fast(w, rows, out):
        return engine({**w, **{k: v.expand(3, *v.shape) for k, v in fixed.items()}}, rows, out)

    a = estimate_llc(loss, sampled, len(y), config, loss_and_grad=fast)
    b = estimate_llc(loss, sampled, len(y), config)
    torch.testing.assert_close(a.traces, b.traces, rtol=1e-4, atol=1e-5)
    assert a.mean == pytest.approx(b.mean, rel=1e-3)
    torch.testing.assert_close(a.acceptance, b.acceptance, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("cfg", [
    TransformerConfig(d_model=12, n_heads=2, d_head=5, d_mlp=16, n_layers=2, attn_bias=True, unembed_bias=True),
    TransformerConfig(d_model=8, n_heads=2, d_head=4, d_mlp=12, n_layers=3, attn_rate=0.4, equals_token=False,
                      causal=False, act_fn="gelu"),
])
def test_a_deep_transformer_loss_and_gradient_equal_autograd_of_the_plain_forward(cfg):
    """n_layers > 1 has no closed form here: its engine is vmap of autograd over the full-sequence forward, with the
    same interface and loss (checked in float64 and in the sampler's float32)."""
    assert_same(cfg, 7, chains=2, batch=5, seed=1)
    assert_same(cfg, 7, chains=3, batch=4, seed=2, dtype=torch.float32)


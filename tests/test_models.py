"""The fast forward path equals the TransformerLens 4 bridge; the MLPs equal a naive loop."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from claimlens import models
from claimlens.config import MLPConfig, TransformerConfig, model_config
from claimlens.errors import CheckpointError
from claimlens.tasks import grid_tokens

FIELDS = ("logits", "pattern", "resid_mid", "mlp_pre", "mlp_post")


def max_rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def assert_matches_bridge(params, cfg: TransformerConfig, p: int, tokens: torch.Tensor, tol: float = 1e-5):
    bridge = models.build_bridge(cfg, p, params)
    ref = models.bridge_activations(bridge, tokens)
    with torch.no_grad():
        ours = models.forward(params, tokens, cfg, cache=True)
    errors = {f: max_rel_err(getattr(ours, f), getattr(ref, f)) for f in FIELDS}
    assert all(getattr(ours, f).shape == getattr(ref, f).shape for f in FIELDS)
    assert max(errors.values()) <= tol, f"fast path vs TransformerLens bridge, max relative error per field: {errors}"


def random_params(cfg, p, seed, scale=1.0):
    """Random weights *and* biases (the trained model has zero attention biases; test them anyway)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * scale / math.sqrt(v.shape[-1])
            for k, v in models.init_params(cfg, p, seed).items()}


@pytest.mark.parametrize("p, cfg", [
    (113, TransformerConfig()),
    (23, TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64)),
    (17, TransformerConfig(d_model=24, n_heads=3, d_head=8, d_mlp=40, act_fn="gelu")),
])
def test_fast_path_equals_bridge_on_random_weights(p, cfg):
    assert_matches_bridge(random_params(cfg, p, seed=p), cfg, p, grid_tokens(p))


def test_fast_path_equals_bridge_on_arbitrary_token_sequences():
    cfg, p = TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64), 23
    tokens = torch.randint(0, p + 1, (500, 3), generator=torch.Generator().manual_seed(0))
    assert_matches_bridge(random_params(cfg, p, seed=1), cfg, p, tokens)


def test_fast_path_equals_bridge_on_trained_weights(tiny_run):
    for epoch in (tiny_run.epochs[len(tiny_run.epochs) // 2], tiny_run.epochs[-1]):
        assert_matches_bridge(tiny_run.checkpoint(epoch), tiny_run.spec.model, tiny_run.spec.task.p, tiny_run.task.tokens)


def test_bridge_load_is_proven_to_change_the_weights():
    cfg, p = TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64), 23
    params = random_params(cfg, p, seed=3)
    bridge = models.build_bridge(cfg, p, params)
    assert models.fingerprint(models.bridge_params(bridge)) == models.fingerprint(params)
    # Loading the same weights again changes nothing: that must be reported, not passed silently.
    with pytest.raises(CheckpointError, match="did not take effect"):
        models.load_into_bridge(bridge, params, cfg, p)


def test_paper_model_has_the_paper_parameter_count():
    cfg = TransformerConfig()
    shapes = models.param_shapes(cfg, 113)
    trainable = sum(math.prod(s) for n, s in shapes.items() if n not in models.frozen_params(cfg))
    # claims_catalogue §1.1 counts 226 816 with the paper code's 114 output classes; the contract here
    # is d_vocab_out = p = 113 (as in every analysis and in TransformerLens's demo), 128 fewer in W_U.
    assert trainable == 226_816 - 128


def test_paper_init_scales():
    params = models.init_params(TransformerConfig(), 113, seed=0)
    ssw = sum(float((v ** 2).sum()) for v in params.values())
    assert abs(ssw - 1781) / 1781 < 0.03, f"sum of squared weights at init {ssw:.0f}, expected ≈ 1781 (catalogue §1.1)"
    assert all(float(params[n].abs().max()) == 0 for n in models.frozen_params(TransformerConfig()))


def naive_mlp(params, tokens, cfg):
    """Example by example, layer by layer, with explicit loops over units."""
    act = {"relu": lambda x: max(x, 0.0), "gelu": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2)))}[cfg.act_fn]
    out = []
    for a, b, _ in tokens.tolist():
        ea, eb = params["embed.W_E"][a].tolist(), params["embed.W_E"][b].tolist()
        h = [x + y for x, y in zip(ea, eb)] if cfg.combine == "sum" else ea + eb
        for i in range(len(cfg.hidden)):
            W, bias = params[f"mlp.{i}.W"], params[f"mlp.{i}.b"]
            h = [act(sum(h[r] * float(W[r, c]) for r in range(len(h))) + float(bias[c])) for c in range(W.shape[1])]
        W_U, b_U = params["unembed.W_U"], params["unembed.b_U"]
        out.append([sum(h[r] * float(W_U[r, c]) for r in range(len(h))) + float(b_U[c]) for c in range(W_U.shape[1])])
    return torch.tensor(out)


@settings(max_examples=8)
@given(combine=st.sampled_from(["sum", "concat"]), act=st.sampled_from(["relu", "gelu"]),
       hidden=st.lists(st.integers(2, 9), min_size=1, max_size=2), seed=st.integers(0, 1000))
def test_mlp_forward_equals_naive_loop(combine, act, hidden, seed):
    cfg, p = MLPConfig(d_embed=5, hidden=tuple(hidden), combine=combine, act_fn=act), 7
    params = models.init_params(cfg, p, seed)
    tokens = grid_tokens(p)[::3]
    torch.testing.assert_close(models.forward(params, tokens, cfg).logits, naive_mlp(params, tokens, cfg),
                               rtol=1e-4, atol=1e-5)


def test_concat_mlp_takes_twice_the_embedding_width():
    shapes = models.param_shapes(MLPConfig(d_embed=200, hidden=(32, 32), combine="concat"), 53)
    assert shapes["mlp.0.W"] == (400, 32) and shapes["unembed.W_U"] == (32, 53)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("blocks.0.mlp.W_in"), "missing ['blocks.0.mlp.W_in']"),
    (lambda d: d.update({"blocks.0.mlp.W_in": torch.zeros(32, 65)}), "blocks.0.mlp.W_in has shape [32, 65]"),
    (lambda d: d["embed.W_E"].__setitem__((0, 0), float("nan")), "embed.W_E holds 1 non-finite values (1 NaN"),
    (lambda d: d["unembed.W_U"].__setitem__((1, 1), float("inf")), "unembed.W_U holds 1 non-finite values (0 NaN, 1 ±inf)"),
    (lambda d: d.update({"extra.W": torch.zeros(1)}), "unexpected ['extra.W']"),
])
def test_validate_params_names_what_is_wrong(mutate, fragment):
    cfg, p = TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64), 23
    params = models.init_params(cfg, p, 0)
    mutate(params)
    with pytest.raises(CheckpointError) as info:
        models.validate_params(params, cfg, p, where="epoch 5")
    assert "epoch 5" in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("attn_rate", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("equals_token, causal", [(True, True), (False, False), (False, True)])
def test_fast_path_equals_the_plain_sequence_forward_at_any_attention_rate(attn_rate, equals_token, causal):
    """Clock/Pizza variant (catalogue §1.3): the fast path equals the plain full-sequence forward (every position,
    α·softmax + (1 − α)·J, the mask as configured) to 1e-5, with and without the '=' token. TransformerLens
    cannot express α < 1; α = 1 is also checked against the bridge below."""
    cfg = TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, attn_rate=attn_rate, equals_token=equals_token,
                      causal=causal, attn_bias=True, unembed_bias=True)
    cfg.validate()
    p = 13
    params = random_params(cfg, p, seed=3)
    assert params["embed.W_E"].shape[0] == (p + 1 if equals_token else p)
    assert params["pos_embed.W_pos"].shape[0] == (3 if equals_token else 2)
    tokens = grid_tokens(p)
    with torch.no_grad():
        ours = models.forward(params, tokens, cfg).logits
        ref = models.naive_forward(params, tokens, cfg)
    assert max_rel_err(ours, ref) <= 1e-5
    if attn_rate == 1.0:
        assert_matches_bridge(params, cfg, p, tokens)
    else:
        with pytest.raises(ValueError, match="TransformerLens cannot express attention rate"):
            models.bridge_config(cfg, p)


def test_attention_rate_outside_the_unit_interval_is_refused():
    from claimlens.errors import SpecError

    with pytest.raises(SpecError, match=r"model.attn_rate"):
        TransformerConfig(attn_rate=1.5).validate()
    with pytest.raises(SpecError, match=r"model.attn_rate.*an MLP has no attention"):
        model_config(kind="mlp", attn_rate=0.0).validate()


# ----------------------------------------------------------------------------- transformers of any depth


@pytest.mark.parametrize("n_layers", [2, 3])
@pytest.mark.parametrize("cfg", [
    TransformerConfig(d_model=30, n_heads=4, d_head=7, d_mlp=48, attn_bias=True, unembed_bias=True),  # 4·7 ≠ 30
    TransformerConfig(d_model=24, n_heads=3, d_head=8, d_mlp=40, act_fn="gelu", causal=False),
])
def test_deep_forward_equals_bridge_and_sequence_forward(n_layers, cfg):
    """n_layers > 1: the full-sequence forward equals the TransformerLens 4 bridge (``n_layers`` blocks; its
    activations are the last block's) and the plain sequence forward, with ``n_heads · d_head ≠ d_model``. An
    independent forward in the source's own layout is in tests/test_depth.py."""
    import dataclasses

    cfg = dataclasses.replace(cfg, n_layers=n_layers)
    cfg.validate()
    p = 11
    params = random_params(cfg, p, seed=n_layers)
    assert sum(k.startswith(f"blocks.{n_layers - 1}.") for k in params) == 12
    assert_matches_bridge(params, cfg, p, grid_tokens(p), tol=1e-4)
    with torch.no_grad():
        ours = models.forward(params, grid_tokens(p), cfg).logits
        assert max_rel_err(ours, models.naive_forward(params, grid_tokens(p), cfg)) <= 1e-5
        # the mask matters from two layers on: the earlier positions' streams feed the last one
        other = dataclasses.replace(cfg, causal=not cfg.causal)
        assert max_rel_err(models.forward(params, grid_tokens(p), other).logits, ours) > 1e-3


def test_one_layer_initialisation_and_fast_path_are_unchanged():
    """A 1-layer spec's parameters, their order and the seeded initialisation are those of every run trained before
    depth existed (the cached runs depend on them): pinned fingerprint."""
    cfg = TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32)
    params = models.init_params(cfg, 7, seed=3)
    assert models.fingerprint(params) == "1fb697d1985c4521107160a42473d95f55440ee4fb6ecc0ae60311cdf880a9b0"
    assert list(params)[:3] == ["embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q"]


def test_deep_shapes_frozen_biases_and_the_depth_check():
    cfg = TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=3)
    shapes = models.param_shapes(cfg, 7)
    assert len(shapes) == 4 + 3 * 12 and list(shapes)[-1] == "unembed.b_U"
    assert models.frozen_params(cfg) == {f"blocks.{l}.attn.b_{x}" for l in range(3) for x in "QKVO"} | {"unembed.b_U"}
    two_layers = TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=2)
    two = models.init_params(two_layers, 7, seed=0)
    with pytest.raises(CheckpointError, match=r"weights hold 2 layers .* config says n_layers = 3") as info:
        models.validate_params(two, cfg, 7, where="epoch 5")
    assert "\n" not in str(info.value)
    acts = models.forward(two, grid_tokens(7), two_layers, cache=True)
    with pytest.raises(ValueError, match="reads the 1-layer circuit"):
        models.ablated_logits(two, acts, two_layers, "mlp_skip")


def test_transformer_depth_is_a_transformer_setting_hashed_only_above_one():
    from claimlens.config import RunSpec
    from claimlens.errors import SpecError

    one = RunSpec.from_dict({"name": "x", "model": {}})
    assert RunSpec.from_dict({"name": "x", "model": {"n_layers": 1}}).hash == one.hash
    two = RunSpec.from_dict({"name": "x", "model": {"n_layers": 2}})
    assert two.model.n_layers == 2 and two.hash != one.hash
    assert RunSpec.from_dict(two.to_dict()) == two
    with pytest.raises(SpecError, match="model.n_layers must be a positive integer"):
        RunSpec.from_dict({"name": "x", "model": {"n_layers": 0}})
    with pytest.raises(SpecError, match="model.n_layers .*an MLP's depth is the length of hidden"):
        RunSpec.from_dict({"name": "x", "model": {"kind": "mlp", "n_layers": 2}})

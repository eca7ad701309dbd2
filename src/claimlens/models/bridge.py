"""TransformerLens 4: the only module of claimlens that imports TransformerLens.

:func:`build_bridge` / :func:`load_into_bridge` build the transformer of Nanda et al. (any ``n_layers``; or an
attention-only model) through TransformerLens 4 (``TransformerBridgeConfig`` + native ``boot``), for hooks and ``run_with_cache``.
TransformerLens is imported lazily, inside these functions, so that importing claimlens stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from claimlens.config import ModelConfig
from claimlens.errors import CheckpointError
from claimlens.models.schema import Params, d_vocab, fingerprint, n_ctx, validate_params
from claimlens.models.transformer import Activations

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge.bridge import TransformerBridge


def bridge_config(cfg: ModelConfig, p: int):
    """The ``TransformerBridgeConfig`` of the paper's transformer for modulus ``p``, ``cfg.n_layers`` blocks (or of an
    attention-only model)."""
    if cfg.kind == "attn_only":
        from transformer_lens.config import TransformerBridgeConfig

        return TransformerBridgeConfig(
            d_model=cfg.d_model, d_head=cfg.d_head, n_heads=cfg.n_heads, n_layers=cfg.n_layers, n_ctx=cfg.n_ctx,
            d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab, attn_only=True, act_fn="relu",
            normalization_type="LN" if cfg.layer_norm else None, attention_dir="causal", seed=0,
        )
    if cfg.kind != "transformer":
        raise ValueError(f"only transformers have a TransformerLens bridge; this model is kind={cfg.kind!r}")
    if cfg.attn_rate != 1:
        raise ValueError(f"TransformerLens cannot express attention rate {cfg.attn_rate:g} (α·softmax + (1 − α)·J); "
                         f"only α = 1 models have a bridge. Use claimlens.models.forward (checked against "
                         f"claimlens.models.naive_forward for any α)")
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(
        d_model=cfg.d_model, d_head=cfg.d_head, n_heads=cfg.n_heads, d_mlp=cfg.d_mlp, n_layers=cfg.n_layers,
        n_ctx=n_ctx(cfg), d_vocab=d_vocab(cfg, p), d_vocab_out=p, act_fn=cfg.act_fn, normalization_type=None,
        attention_dir="causal" if cfg.causal else "bidirectional", seed=0,
    )


def build_bridge(cfg: ModelConfig, p: int, params: Params | None = None, *, device: str = "cpu") -> TransformerBridge:
    """A TransformerLens 4 bridge around the native model; loads ``params`` (checked) if given."""
    from transformer_lens.model_bridge.sources.native import boot

    bridge = boot(bridge_config(cfg, p), device=device)
    bridge.eval()
    if params is not None:
        load_into_bridge(bridge, params, cfg, p)
    return bridge


def bridge_params(bridge: TransformerBridge) -> dict[str, torch.Tensor]:
    """Read the bridge's weights back in property format (every block)."""
    out = {"embed.W_E": bridge.W_E, "pos_embed.W_pos": bridge.W_pos, "unembed.W_U": bridge.W_U, "unembed.b_U": bridge.b_U}
    for layer, block in enumerate(bridge.blocks):
        for n in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"):
            out[f"blocks.{layer}.attn.{n}"] = getattr(block.attn, n)
        for n in ("W_in", "b_in", "W_out", "b_out"):
            out[f"blocks.{layer}.mlp.{n}"] = getattr(block.mlp, n)
    return {k: v.detach() for k, v in out.items()}


def load_into_bridge(bridge: TransformerBridge, params: Params, cfg: ModelConfig, p: int) -> None:
    """Load property-format ``params`` and prove the load took effect.

    A TransformerLens 4 release once loaded nothing, silently (see shared/peers.md). So the weights
    are read back after loading: their fingerprint must equal the source's and differ from before.
    """
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    validate_params(params, cfg, p, where="weights loaded into the TransformerLens bridge")
    source = {k: v.detach().to(torch.float32).cpu() for k, v in params.items()}
    before = fingerprint(bridge_params(bridge))
    converted = convert_tl_checkpoint(source, bridge.cfg)
    with torch.no_grad():
        bridge.load_state_dict(converted, strict=True)
    after = fingerprint({k: v.cpu() for k, v in bridge_params(bridge).items()})
    if after != fingerprint(source) or after == before:
        raise CheckpointError(
            "loading weights into the TransformerLens bridge did not take effect "
            f"(fingerprint before {before[:12]}, after {after[:12]}, expected {fingerprint(source)[:12]})"
        )


def bridge_activations(bridge: TransformerBridge, tokens: torch.Tensor) -> Activations:
    """The same final-position activations as :func:`forward` (the last block's, as there), from
    ``run_with_cache``."""
    last = bridge.cfg.n_layers - 1
    b = f"blocks.{last}."
    names = [b + "attn.hook_pattern", b + "hook_resid_mid", b + "mlp.hook_pre", b + "mlp.hook_post"]
    tokens = tokens[:, : bridge.cfg.n_ctx]  # a model without '=' reads [a, b]
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    return Activations(
        logits=logits[:, -1],
        pattern=cache["pattern", last][:, :, -1, :],
        resid_mid=cache[b + "hook_resid_mid"][:, -1],
        mlp_pre=cache[b + "mlp.hook_pre"][:, -1],
        mlp_post=cache[b + "mlp.hook_post"][:, -1],
    )

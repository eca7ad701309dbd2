"""The parameter schema, over TransformerLens *property format*: names and shapes of every model kind, the
initialisation, the parameters held fixed, the checks a set of weights must pass, and its fingerprint.

Parameter names and shapes (transformer; ``V = p + 1`` input tokens, ``p`` output classes; one set of
``blocks.{l}`` for each layer ``l = 0 … n_layers − 1``; ``n_heads · d_head`` need not equal ``d_model``)::

    embed.W_E [V, d_model]          pos_embed.W_pos [3, d_model]
    blocks.{l}.attn.W_Q/W_K/W_V [n_heads, d_model, d_head]   b_Q/b_K/b_V [n_heads, d_head]
    blocks.{l}.attn.W_O [n_heads, d_head, d_model]           b_O [d_model]
    blocks.{l}.mlp.W_in [d_model, d_mlp]  b_in [d_mlp]       W_out [d_mlp, d_model]  b_out [d_model]
    unembed.W_U [d_model, p]        unembed.b_U [p]

MLP family (names of our own, documented here)::

    embed.W_E [p, d_embed]
    mlp.{i}.W [d_in, d_out]   mlp.{i}.b [d_out]     (d_in = d_embed, or 2·d_embed for "concat")
    unembed.W_U [d_last, p]   unembed.b_U [p]

The attention-only model's are in :mod:`claimlens.models.attn_only`. ``p`` (the modulus) is None for it: its
vocabulary and context are in its config.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import torch

from claimlens.config import ModelConfig
from claimlens.errors import CheckpointError
from claimlens.models import attn_only

Params = Mapping[str, torch.Tensor]

N_CTX = 3  # [a, b, =]; a model without the '=' token (``equals_token = false``) reads [a, b]


def n_ctx(cfg: ModelConfig) -> int:
    """Positions the transformer reads: 3 (``[a, b, =]``) or 2 (``[a, b]``, Clock/Pizza without ``eqn_sign``)."""
    return N_CTX if cfg.equals_token else N_CTX - 1


def d_vocab(cfg: ModelConfig, p: int) -> int:
    """Input vocabulary: ``p`` numbers and, if the model reads it, the ``=`` token (the last, ``p``)."""
    return p + 1 if cfg.equals_token else p


def param_shapes(cfg: ModelConfig, p: int | None) -> dict[str, tuple[int, ...]]:
    """Expected name → shape of every parameter of a model for modulus ``p`` (an attention-only model reads its
    vocabulary and context from ``cfg``; ``p`` is not used)."""
    if cfg.kind == "attn_only":
        return attn_only.param_shapes(cfg)
    if cfg.kind == "transformer":
        # in this order (the seeded initialisation draws in it): embeddings, block 0, block 1, …, unembedding
        D, H, dh, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
        shapes = {"embed.W_E": (d_vocab(cfg, p), D), "pos_embed.W_pos": (n_ctx(cfg), D)}
        for layer in range(cfg.n_layers):
            b = f"blocks.{layer}."
            shapes.update({
                b + "attn.W_Q": (H, D, dh),
                b + "attn.W_K": (H, D, dh),
                b + "attn.W_V": (H, D, dh),
                b + "attn.W_O": (H, dh, D),
                b + "attn.b_Q": (H, dh),
                b + "attn.b_K": (H, dh),
                b + "attn.b_V": (H, dh),
                b + "attn.b_O": (D,),
                b + "mlp.W_in": (D, M),
                b + "mlp.b_in": (M,),
                b + "mlp.W_out": (M, D),
                b + "mlp.b_out": (D,),
            })
        shapes["unembed.W_U"] = (D, p)
        shapes["unembed.b_U"] = (p,)
        return shapes
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (p, cfg.d_embed)}
    d_in = cfg.d_embed * (2 if cfg.combine == "concat" else 1)
    for i, width in enumerate(cfg.hidden):
        shapes[f"mlp.{i}.W"] = (d_in, width)
        shapes[f"mlp.{i}.b"] = (width,)
        d_in = width
    shapes["unembed.W_U"] = (d_in, p)
    shapes["unembed.b_U"] = (p,)
    return shapes


def frozen_params(cfg: ModelConfig, p: int | None = None) -> set[str]:
    """Parameters held fixed during training and by the LLC: the zero biases the paper's model does not have
    (``attn_bias`` / ``unembed_bias`` false) and every name in ``cfg.frozen``. With ``p``, names that are not
    parameters of the model are refused (:class:`claimlens.errors.SpecError`)."""
    frozen = set(cfg.frozen)
    if p is not None or cfg.kind == "attn_only":  # an attention-only model's shapes need no p
        unknown = sorted(frozen - set(param_shapes(cfg, p)))
        if unknown:
            from claimlens.errors import SpecError

            raise SpecError(f"model.frozen names {unknown}, which are not parameters of this {cfg.kind}; "
                            f"its parameters: {sorted(param_shapes(cfg, p))}")
    if cfg.kind == "attn_only":
        return frozen | attn_only.frozen(cfg)
    if cfg.kind != "transformer":
        return frozen
    if not cfg.attn_bias:
        frozen |= {f"blocks.{layer}.attn.b_{x}" for layer in range(cfg.n_layers) for x in "QKVO"}
    if not cfg.unembed_bias:
        frozen.add("unembed.b_U")
    return frozen


def init_params(cfg: ModelConfig, p: int | None, seed: int) -> dict[str, torch.Tensor]:
    """Fresh parameters from a seeded generator (the global RNG is not touched).

    Transformer: the initialisation of the paper's code — every matrix ``N(0, 1)/√d_model`` except
    ``W_U`` with ``N(0, 1)/√d_vocab``; biases zero. MLP: ``N(0, 1)`` embedding and PyTorch's
    ``nn.Linear`` default ``U(±1/√fan_in)`` for weights and biases.
    """
    if cfg.kind == "attn_only":
        return attn_only.init_params(cfg, seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in param_shapes(cfg, p).items():
        if cfg.kind == "transformer":
            leaf = name.rsplit(".", 1)[1]
            if leaf.startswith("b_"):
                out[name] = torch.zeros(shape)
            else:
                scale = math.sqrt(p + 1) if leaf == "W_U" else math.sqrt(cfg.d_model)
                out[name] = torch.randn(shape, generator=gen) / scale
        elif name == "embed.W_E":
            out[name] = torch.randn(shape, generator=gen)
        else:
            fan_in = shape[0] if name.endswith(("W", "W_U")) else _fan_in_of_bias(name, out)
            bound = 1.0 / math.sqrt(fan_in)
            out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    return out


def _fan_in_of_bias(name: str, so_far: Mapping[str, torch.Tensor]) -> int:
    weight = name[:-1] + "W" if name.endswith(".b") else "unembed.W_U"
    return so_far[weight].shape[0]


def validate_params(params: Params, cfg: ModelConfig, p: int | None, *, where: str) -> None:
    """Names and shapes must match the config exactly; values must be finite.

    Raises :class:`CheckpointError` naming ``where`` (a file and epoch), the parameter and both shapes.
    """
    expected = param_shapes(cfg, p)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    held, named = layers_in(params), getattr(cfg, "n_layers", None)
    if (missing or extra) and named is not None and held and held != named:
        raise CheckpointError(
            f"{where}: the weights hold {held} layer{'s' if held != 1 else ''} (blocks.0 … blocks.{held - 1}) but the "
            f"config says n_layers = {named}; correct n_layers in the config (or the spec) to the model that was trained")
    if missing or extra:
        raise CheckpointError(
            f"{where}: parameters do not match a {cfg.kind} with {_config_summary(cfg, p)}: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}. Correct the spec to the model that was "
            f"trained; checkpoints in another format or naming are made a run with `claimlens import`"
        )
    for name, shape in expected.items():
        tensor = params[name]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"{where}: {name} has shape {list(tensor.shape)} but the config "
                f"({_config_summary(cfg, p)}) needs {list(shape)}. The spec does not describe these weights: "
                f"correct the spec (in run.json, or the --spec given to `claimlens import`) to the model that "
                f"was trained"
            )
        if not tensor.is_floating_point():
            raise CheckpointError(f"{where}: {name} has dtype {tensor.dtype}, expected a floating-point tensor")
        bad = ~torch.isfinite(tensor)
        if bad.any():
            n_nan = int(torch.isnan(tensor).sum())
            raise CheckpointError(
                f"{where}: {name} holds {int(bad.sum())} non-finite values ({n_nan} NaN, "
                f"{int(bad.sum()) - n_nan} ±inf) of {tensor.numel()}"
            )


def layers_in(params: Params) -> int:
    """How many transformer blocks a state dict holds: the largest ``l`` of its ``blocks.{l}.…`` keys + 1 (0: none)."""
    found = [int(k.split(".")[1]) for k in params if k.startswith("blocks.") and k.split(".")[1].isdigit()]
    return max(found) + 1 if found else 0


def _config_summary(cfg: ModelConfig, p: int | None) -> str:
    if cfg.kind == "attn_only":
        return (f"n_layers={cfg.n_layers}, d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_head={cfg.d_head}, "
                f"d_vocab={cfg.d_vocab}, n_ctx={cfg.n_ctx}, layer_norm={cfg.layer_norm}")
    if cfg.kind == "transformer":
        layers = f"n_layers={cfg.n_layers}, " if cfg.n_layers != 1 else ""
        return f"p={p}, {layers}d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_head={cfg.d_head}, d_mlp={cfg.d_mlp}"
    return f"p={p}, d_embed={cfg.d_embed}, hidden={list(cfg.hidden)}, combine={cfg.combine}"


def fingerprint(params: Params) -> str:
    """sha256 over names, shapes, dtypes and bytes of the parameters (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(params):
        t = params[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{list(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

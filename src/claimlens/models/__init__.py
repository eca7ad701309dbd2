"""Models, over parameters in TransformerLens *property format*. The only module that imports TransformerLens.

Two ways to run the same parameters:

* :func:`build_bridge` / :func:`load_into_bridge` build the 1-layer transformer of Nanda et al.
  through TransformerLens 4 (``TransformerBridgeConfig`` + native ``boot``), for hooks and
  ``run_with_cache``. TransformerLens is imported lazily, inside these functions, so that importing
  claimlens stays cheap.
* :func:`forward` is a plain-torch path for training and batched analysis. It computes the query,
  the MLP and the unembedding at the final (``=``) position only, since nothing else is ever used,
  and computes the per-position key/value/query projections once per *vocabulary token* rather
  than once per example. ``tests/test_models.py`` shows it equal to the bridge.

Parameter names and shapes (transformer; ``V = p + 1`` input tokens, ``p`` output classes)::

    embed.W_E [V, d_model]          pos_embed.W_pos [3, d_model]
    blocks.0.attn.W_Q/W_K/W_V [n_heads, d_model, d_head]   b_Q/b_K/b_V [n_heads, d_head]
    blocks.0.attn.W_O [n_heads, d_head, d_model]           b_O [d_model]
    blocks.0.mlp.W_in [d_model, d_mlp]  b_in [d_mlp]       W_out [d_mlp, d_model]  b_out [d_model]
    unembed.W_U [d_model, p]        unembed.b_U [p]

MLP family (names of our own, documented here)::

    embed.W_E [p, d_embed]
    mlp.{i}.W [d_in, d_out]   mlp.{i}.b [d_out]     (d_in = d_embed, or 2·d_embed for "concat")
    unembed.W_U [d_last, p]   unembed.b_U [p]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from claimlens.config import ModelConfig
from claimlens.errors import CheckpointError
from claimlens.models import attn_only

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge.bridge import TransformerBridge

Params = Mapping[str, torch.Tensor]

N_CTX = 3  # [a, b, =]; a model without the '=' token (``equals_token = false``) reads [a, b]
_ACT = {"relu": F.relu, "gelu": F.gelu}


def n_ctx(cfg: ModelConfig) -> int:
    """Positions the transformer reads: 3 (``[a, b, =]``) or 2 (``[a, b]``, Clock/Pizza without ``eqn_sign``)."""
    return N_CTX if cfg.equals_token else N_CTX - 1


def d_vocab(cfg: ModelConfig, p: int) -> int:
    """Input vocabulary: ``p`` numbers and, if the model reads it, the ``=`` token (the last, ``p``)."""
    return p + 1 if cfg.equals_token else p


# ----------------------------------------------------------------------------- shapes and init


def param_shapes(cfg: ModelConfig, p: int) -> dict[str, tuple[int, ...]]:
    """Expected name → shape of every parameter of a model for modulus ``p`` (an attention-only model reads its
    vocabulary and context from ``cfg``; ``p`` is not used)."""
    if cfg.kind == "attn_only":
        return attn_only.param_shapes(cfg)
    if cfg.kind == "transformer":
        D, H, dh, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
        return {
            "embed.W_E": (d_vocab(cfg, p), D),
            "pos_embed.W_pos": (n_ctx(cfg), D),
            "blocks.0.attn.W_Q": (H, D, dh),
            "blocks.0.attn.W_K": (H, D, dh),
            "blocks.0.attn.W_V": (H, D, dh),
            "blocks.0.attn.W_O": (H, dh, D),
            "blocks.0.attn.b_Q": (H, dh),
            "blocks.0.attn.b_K": (H, dh),
            "blocks.0.attn.b_V": (H, dh),
            "blocks.0.attn.b_O": (D,),
            "blocks.0.mlp.W_in": (D, M),
            "blocks.0.mlp.b_in": (M,),
            "blocks.0.mlp.W_out": (M, D),
            "blocks.0.mlp.b_out": (D,),
            "unembed.W_U": (D, p),
            "unembed.b_U": (p,),
        }
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
    if p is not None:
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
        frozen |= {f"blocks.0.attn.b_{x}" for x in "QKVO"}
    if not cfg.unembed_bias:
        frozen.add("unembed.b_U")
    return frozen


def init_params(cfg: ModelConfig, p: int, seed: int) -> dict[str, torch.Tensor]:
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


def validate_params(params: Params, cfg: ModelConfig, p: int, *, where: str) -> None:
    """Names and shapes must match the config exactly; values must be finite.

    Raises :class:`CheckpointError` naming ``where`` (a file and epoch), the parameter and both shapes.
    """
    expected = param_shapes(cfg, p)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
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


def _config_summary(cfg: ModelConfig, p: int) -> str:
    if cfg.kind == "attn_only":
        return (f"n_layers={cfg.n_layers}, d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_head={cfg.d_head}, "
                f"d_vocab={cfg.d_vocab}, n_ctx={cfg.n_ctx}, layer_norm={cfg.layer_norm}")
    if cfg.kind == "transformer":
        return f"p={p}, d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_head={cfg.d_head}, d_mlp={cfg.d_mlp}"
    return f"p={p}, d_embed={cfg.d_embed}, hidden={list(cfg.hidden)}, combine={cfg.combine}"


def fingerprint(params: Params) -> str:
    """sha256 over names, shapes, dtypes and bytes of the parameters (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(params):
        t = params[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{list(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- fast forward


@dataclass
class Activations:
    """Final-position activations of one forward pass (leading axes: ``batch``)."""

    logits: torch.Tensor  # [batch, p]
    pattern: torch.Tensor | None = None  # [batch, n_heads, pos] attention from the final query
    resid_mid: torch.Tensor | None = None  # [batch, d_model]
    mlp_pre: torch.Tensor | None = None  # [batch, d_mlp] (MLP family: first hidden layer)
    mlp_post: torch.Tensor | None = None  # [batch, d_mlp]


def forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig, *, cache: bool = False) -> Activations:
    """Logits ``[batch, p]`` at the final position for ``tokens [batch, 3]``; activations if ``cache``."""
    if cfg.kind == "transformer":
        if not cfg.equals_token and tokens.shape[1] == N_CTX:
            tokens = tokens[:, :N_CTX - 1]  # the task's rows are [a, b, =]; this model never reads '='
        return _transformer_forward(params, tokens, _ACT[cfg.act_fn], cache, cfg.attn_rate)
    return _mlp_forward(params, tokens, cfg, cache)


def _transformer_forward(params: Params, tokens: torch.Tensor, act, cache: bool, attn_rate: float = 1.0) -> Activations:
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    pre = "blocks.0.attn."
    W_Q, W_K, W_V, W_O = (params[pre + n] for n in ("W_Q", "W_K", "W_V", "W_O"))
    b_Q, b_K, b_V, b_O = (params[pre + n] for n in ("b_Q", "b_K", "b_V", "b_O"))
    n_pos, last = tokens.shape[1], tokens.shape[1] - 1
    d_head = W_Q.shape[-1]

    # Residual stream per (position, vocabulary token): a table instead of one row per example.
    # Rows are gathered with index_select, whose backward is far faster on CPU than indexing's.
    x_tab = W_E.unsqueeze(0) + W_pos[:n_pos].unsqueeze(1)  # [pos, vocab, d_model]
    k_tab = torch.einsum("pvd,hde->pvhe", x_tab, W_K) + b_K  # [pos, vocab, head, d_head]
    v_tab = torch.einsum("pvd,hde->pvhe", x_tab, W_V) + b_V  # [pos, vocab, head, d_head]
    q_tab = torch.einsum("vd,hde->vhe", x_tab[last], W_Q) + b_Q  # [vocab, head, d_head]

    def rows(table: torch.Tensor, j: int) -> torch.Tensor:  # [vocab, *rest] -> [batch, *rest]
        return table.flatten(1).index_select(0, tokens[:, j]).view(-1, *table.shape[1:])

    k = torch.stack([rows(k_tab[j], j) for j in range(n_pos)], dim=1)  # [batch, pos, head, d_head]
    v = torch.stack([rows(v_tab[j], j) for j in range(n_pos)], dim=1)  # [batch, pos, head, d_head]
    q = rows(q_tab, last)  # [batch, head, d_head]

    # Tiny per-example contractions: elementwise products beat batched matmuls here.
    scores = (k * q.unsqueeze(1)).sum(-1) / math.sqrt(d_head)  # [batch, pos, head]; the last query sees all
    pattern = scores.softmax(dim=1).transpose(1, 2)  # [batch, head, pos]
    if attn_rate != 1:  # Clock/Pizza: α·softmax + (1 − α)·J, J all ones (not 1/pos: rows sum to 1 + (1 − α)(pos − 1))
        pattern = attn_rate * pattern + (1 - attn_rate)
    z = (pattern.transpose(1, 2).unsqueeze(-1) * v).sum(1)  # [batch, head, d_head]
    attn_out = z.flatten(1) @ W_O.flatten(0, 1) + b_O  # [batch, d_model]

    resid_mid = rows(x_tab[last], last) + attn_out  # [batch, d_model]
    # addmm fuses each bias (and the residual) into its matmul.
    mlp_pre = torch.addmm(params["blocks.0.mlp.b_in"], resid_mid, params["blocks.0.mlp.W_in"])  # [batch, d_mlp]
    mlp_post = act(mlp_pre)
    resid_post = torch.addmm(resid_mid + params["blocks.0.mlp.b_out"], mlp_post, params["blocks.0.mlp.W_out"])
    logits = torch.addmm(params["unembed.b_U"], resid_post, params["unembed.W_U"])  # [batch, p]
    if not cache:
        return Activations(logits)
    return Activations(logits, pattern, resid_mid, mlp_pre, mlp_post)


def sequence_forward(params: Params, embeddings: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The transformer written plainly, every position computed as in the source code (Nanda et al.'s and
    Zhong et al.'s ``Transformer.forward``): final-position logits ``[batch, p]`` from the token embeddings
    ``embeddings [batch, pos, d_model]`` (rows of ``W_E``, before the positional embedding).

    The reference for :func:`forward` (any attention rate, with or without the causal mask) and the function whose
    input gradients define gradient symmetricity (Zhong et al. 2023, Def. 4.1)."""
    a = "blocks.0.attn."
    x = embeddings + params["pos_embed.W_pos"][: embeddings.shape[1]]  # [batch, pos, d]
    q = torch.einsum("bpd,hde->bhpe", x, params[a + "W_Q"]) + params[a + "b_Q"][:, None]
    k = torch.einsum("bpd,hde->bhpe", x, params[a + "W_K"]) + params[a + "b_K"][:, None]
    v = torch.einsum("bpd,hde->bhpe", x, params[a + "W_V"]) + params[a + "b_V"][:, None]
    scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(q.shape[-1])
    if cfg.causal:
        n = x.shape[1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    pattern = cfg.attn_rate * scores.softmax(-1) + (1 - cfg.attn_rate)  # J: all ones (Zhong et al. §5)
    z = torch.einsum("bhqk,bhke->bhqe", pattern, v)
    x = x + torch.einsum("bhqe,hed->bqd", z, params[a + "W_O"]) + params[a + "b_O"]
    pre = x @ params["blocks.0.mlp.W_in"] + params["blocks.0.mlp.b_in"]
    x = x + _ACT[cfg.act_fn](pre) @ params["blocks.0.mlp.W_out"] + params["blocks.0.mlp.b_out"]
    return (x @ params["unembed.W_U"] + params["unembed.b_U"])[:, -1]


def naive_forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """:func:`sequence_forward` on ``tokens [batch, 3]`` (the ``=`` column dropped for a model without it)."""
    tokens = tokens[:, :n_ctx(cfg)]
    return sequence_forward(params, params["embed.W_E"][tokens], cfg)


def ablated_logits(params: Params, acts: Activations, cfg: ModelConfig, ablate: str) -> torch.Tensor:
    """Final-position logits ``[batch, p]`` of the transformer with one part zero-ablated (NCLSS App. A.1), from the
    activations of an ordinary forward pass (``cache=True``) on inputs ending in ``=``:

    * ``"mlp_skip"``: the residual path around the MLP removed, ``resid_post = mlp_out`` (the MLP still reads
      ``resid_mid``);
    * ``"attention"``: the heads' outputs zeroed (``z = 0``, so the attention block writes only ``b_O``); the
      query position then carries the ``=`` token's embedding, the same for every input.
    """
    if cfg.kind != "transformer" or acts.mlp_post is None:
        raise ValueError("ablated_logits needs a transformer's activations from forward(..., cache=True)")
    act = _ACT[cfg.act_fn]
    W_out, b_out = params["blocks.0.mlp.W_out"], params["blocks.0.mlp.b_out"]
    W_U, b_U = params["unembed.W_U"], params["unembed.b_U"]
    if ablate == "mlp_skip":
        return (acts.mlp_post @ W_out + b_out) @ W_U + b_U
    if ablate == "attention":
        if not cfg.equals_token:
            raise ValueError("the attention ablation keeps the '=' token's embedding at the query position; this "
                             "model reads [a, b] without '=' (equals_token = false), so the ablation is not defined")
        equals = params["embed.W_E"].shape[0] - 1  # the '=' token, the last of the vocabulary
        resid_mid = params["embed.W_E"][equals] + params["pos_embed.W_pos"][N_CTX - 1] + params["blocks.0.attn.b_O"]
        mlp_post = act(resid_mid @ params["blocks.0.mlp.W_in"] + params["blocks.0.mlp.b_in"])
        logits = (resid_mid + mlp_post @ W_out + b_out) @ W_U + b_U  # [p]: the same for every input
        return logits.expand(acts.logits.shape[0], -1)
    raise ValueError(f"unknown ablation {ablate!r}; use 'mlp_skip' or 'attention'")


def _mlp_forward(params: Params, tokens: torch.Tensor, cfg: ModelConfig, cache: bool) -> Activations:
    W_E = params["embed.W_E"]
    act = _ACT[cfg.act_fn]
    first_pre = first_post = None
    if cfg.hidden:
        # The first layer is linear in each embedding, so it is applied to the p vocabulary rows once and the
        # results gathered: (E[a] + E[b]) W = (E W)[a] + (E W)[b]; concat: E[a] W_top + E[b] W_bottom. The same
        # function as the per-example product, with p instead of batch rows in the big product (fp32 rounding
        # differs only in summation order).
        W0, d = params["mlp.0.W"], W_E.shape[1]
        if cfg.combine == "sum":
            top = bottom = W_E @ W0
        else:
            top, bottom = W_E @ W0[:d], W_E @ W0[d:]
        pre = top.index_select(0, tokens[:, 0]) + bottom.index_select(0, tokens[:, 1]) + params["mlp.0.b"]
        h = first_post = act(pre)
        first_pre = pre
    else:
        e_a, e_b = W_E.index_select(0, tokens[:, 0]), W_E.index_select(0, tokens[:, 1])  # [batch, d_embed]
        h = e_a + e_b if cfg.combine == "sum" else torch.cat([e_a, e_b], dim=-1)
    for i in range(1, len(cfg.hidden)):
        h = act(h @ params[f"mlp.{i}.W"] + params[f"mlp.{i}.b"])
    logits = h @ params["unembed.W_U"] + params["unembed.b_U"]
    if not cache:
        return Activations(logits)
    return Activations(logits, mlp_pre=first_pre, mlp_post=first_post)


# ----------------------------------------------------------------------------- TransformerLens 4


def bridge_config(cfg: ModelConfig, p: int):
    """The ``TransformerBridgeConfig`` of the paper's transformer for modulus ``p`` (or of an attention-only model)."""
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
        d_model=cfg.d_model, d_head=cfg.d_head, n_heads=cfg.n_heads, d_mlp=cfg.d_mlp, n_layers=1,
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
    """Read the bridge's weights back in property format."""
    attn, mlp = bridge.blocks[0].attn, bridge.blocks[0].mlp
    out = {"embed.W_E": bridge.W_E, "pos_embed.W_pos": bridge.W_pos, "unembed.W_U": bridge.W_U, "unembed.b_U": bridge.b_U}
    for n in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"):
        out[f"blocks.0.attn.{n}"] = getattr(attn, n)
    for n in ("W_in", "b_in", "W_out", "b_out"):
        out[f"blocks.0.mlp.{n}"] = getattr(mlp, n)
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
    """The same final-position activations as :func:`forward`, from ``run_with_cache``."""
    names = ["blocks.0.attn.hook_pattern", "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post"]
    tokens = tokens[:, : bridge.cfg.n_ctx]  # a model without '=' reads [a, b]
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    return Activations(
        logits=logits[:, -1],
        pattern=cache["pattern", 0][:, :, -1, :],
        resid_mid=cache["blocks.0.hook_resid_mid"][:, -1],
        mlp_pre=cache["blocks.0.mlp.hook_pre"][:, -1],
        mlp_post=cache["blocks.0.mlp.hook_post"][:, -1],
    )

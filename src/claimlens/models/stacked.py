"""Loss and gradient of many parameter sets at once, written out by hand: the inner loop of the LLC sampler.

The SGLD sampler of :mod:`claimlens.families.llc.metrics` advances ``C`` chains, each a full copy of the model's
parameters, on a minibatch of its own at every step. :func:`loss_and_grad` gives the mean cross entropy of every
chain on its rows and the gradient of it with respect to every parameter, as batched matrix products over the
leading chain axis — no autograd graph, no ``vmap``, no per-chain loop. The forward is the one of
:func:`claimlens.models.forward` (the same tables per vocabulary token, the query, MLP and unembedding at the
final position only); the backward is its closed form. ``tests/test_stacked.py`` checks both against
``torch.func.vmap(torch.func.grad(...))`` of the plain forward, which the sampler keeps as its reference engine.

Shapes: every parameter carries a leading chain axis, ``[C, *shape]`` (a parameter held fixed may be a
broadcast view, ``tensor.expand(C, *shape)``); ``rows [C, B]`` are indices into the data the function was built
for; the loss is ``[C]`` float64 (the mean over ``B`` rows of float32 per-row cross entropies).

Only the two model kinds of :mod:`claimlens.models` are written out: the 1-layer transformer of Nanda et al.
(2023) (relu or gelu MLP, any attention rate, with or without the ``=`` token) and the MLP family (sum or concat of the two input embeddings, any depth, relu or gelu).
A transformer of ``n_layers > 1`` is not written out (its final position reads every position of every earlier
block): :func:`deep_transformer_loss_and_grad` gives it the same interface through ``torch.func.vmap`` of autograd
over :func:`claimlens.models.transformer.deep_forward`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from claimlens.config import ModelConfig

Stacked = Mapping[str, torch.Tensor]
LossAndGrad = Callable[[Stacked, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


def _act_and_grad(name: str) -> tuple[Callable, Callable]:
    """(activation, backward ``(grad_out, pre) -> grad_pre``) for ``relu`` / ``gelu`` (exact, erf form): the
    backward is ATen's own fused kernel, one pass instead of a mask and a product."""
    if name == "relu":
        return F.relu, lambda grad, pre: torch.ops.aten.threshold_backward(grad, pre, 0.0)
    if name == "gelu":
        return F.gelu, lambda grad, pre: torch.ops.aten.gelu_backward(grad, pre)
    raise ValueError(f"no written-out derivative for act_fn {name!r}; use 'relu' or 'gelu'")


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table [C, R, *rest]``, ``index [C, *idx]`` (row numbers per chain) → ``[C, *idx, *rest]``."""
    C, R = table.shape[:2]
    rest = table.shape[2:]
    base = (torch.arange(C) * R).view(C, *[1] * (index.dim() - 1))
    return table.reshape(C * R, -1).index_select(0, (index + base).flatten()).view(*index.shape, *rest)


def _scatter(grad: torch.Tensor, index: torch.Tensor, rows: int) -> torch.Tensor:
    """Adjoint of :func:`_gather`: ``grad [C, *idx, *rest]`` summed into ``[C, rows, *rest]``."""
    C = index.shape[0]
    rest = grad.shape[index.dim():]
    base = (torch.arange(C) * rows).view(C, *[1] * (index.dim() - 1))
    out = grad.new_zeros(C * rows, math.prod(rest))
    out.index_add_(0, (index + base).flatten(), grad.reshape(-1, math.prod(rest)))
    return out.view(C, rows, *rest)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross entropy per chain ``[C]`` (float64) and its gradient with respect to ``logits [C, B, P]``."""
    B = logits.shape[1]
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # [C, B]
    loss = -picked.double().mean(1)
    dlogits = logp.exp_()
    dlogits.scatter_add_(-1, labels.unsqueeze(-1), torch.full_like(picked, -1.0).unsqueeze(-1))
    return loss, dlogits.div_(B)


def _write(out: Mapping[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
    if name in out:
        out[name].copy_(value.view_as(out[name]))


def _sum_rows(out: Mapping[str, torch.Tensor], name: str, grad: torch.Tensor) -> None:
    """A bias's gradient: ``grad [C, B, *shape]`` summed over the rows, straight into ``out[name]``."""
    if name in out:
        torch.sum(grad, 1, out=out[name].view(grad.shape[0], *grad.shape[2:]))


def transformer_loss_and_grad(cfg: ModelConfig, tokens: torch.Tensor, labels: torch.Tensor) -> LossAndGrad:
    """Loss-and-gradient function of the 1-layer transformer on ``tokens [n, pos]``, ``labels [n]``.

    The tables hold one row per (position, token that occurs there in ``tokens``): for the modular-addition
    task that is ``p`` rows for each of ``a`` and ``b`` and a single row for ``=``, so the key/value projection
    and its gradient cost ``2p + 1`` rows instead of ``3(p + 1)``. When the final position holds one token only
    (``=``), every example has the same query, so the attention scores are computed per table row and gathered;
    otherwise (the Clock/Pizza models without ``=``) per example.
    """
    if not cfg.equals_token and tokens.shape[1] == 3:
        tokens = tokens[:, :2]  # the model reads [a, b]
    n_pos = tokens.shape[1]
    last = n_pos - 1
    alpha = float(cfg.attn_rate)
    act, dact = _act_and_grad(cfg.act_fn)
    H, dh = cfg.n_heads, cfg.d_head
    used = [torch.unique(tokens[:, j]) for j in range(n_pos)]  # sorted token ids per position
    starts = [0]
    for u in used:
        starts.append(starts[-1] + len(u))
    R = starts[-1]
    table_token = torch.cat(used)  # [R] vocabulary token of each table row
    table_pos = torch.cat([torch.full((len(u),), j) for j, u in enumerate(used)])  # [R]
    local = torch.stack([torch.searchsorted(used[j], tokens[:, j].contiguous()) + starts[j] for j in range(n_pos)], 1)  # [n, pos]
    q_rows = slice(starts[last], starts[last + 1])  # the table rows of the final position's tokens
    one_query = starts[last + 1] - starts[last] == 1  # one token at the final position ('='): one query
    scale = 1.0 / math.sqrt(dh)

    def loss_and_grad(w: Stacked, rows: torch.Tensor, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        C, B = rows.shape
        W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
        a = "blocks.0.attn."
        W_Q, W_K, W_V, W_O = (w[a + k] for k in ("W_Q", "W_K", "W_V", "W_O"))  # [C, H, D, dh]; W_O [C, H, dh, D]
        D = W_E.shape[-1]
        W_in, W_out, W_U = w["blocks.0.mlp.W_in"], w["blocks.0.mlp.W_out"], w["unembed.W_U"]

        # ---- forward
        X = W_E.index_select(1, table_token) + W_pos.index_select(1, table_pos)  # [C, R, D]
        W_KV = torch.cat([W_K, W_V], dim=1).permute(0, 2, 1, 3).reshape(C, D, 2 * H * dh)  # [C, D, 2·H·dh]
        b_KV = torch.cat([w[a + "b_K"], w[a + "b_V"]], dim=1).reshape(C, 1, 2 * H * dh)
        KV = torch.baddbmm(b_KV, X, W_KV)  # [C, R, 2·H·dh]
        Xq = X[:, q_rows]  # [C, Rq, D]
        W_Qf = W_Q.permute(0, 2, 1, 3).reshape(C, D, H * dh)
        Qt = torch.baddbmm(w[a + "b_Q"].reshape(C, 1, H * dh), Xq, W_Qf)  # [C, Rq, H·dh]

        idx = local[rows]  # [C, B, pos] table rows
        if one_query:
            # Every example has the same query (the '=' token): the scores are a property of the table rows,
            # [C, R, H], gathered per example; only the values are gathered at full width.
            K_tab = KV.view(C, R, 2, H, dh)[:, :, 0]  # [C, R, H, dh]
            S_tab = (K_tab * Qt.view(C, 1, H, dh)).sum(-1) * scale  # [C, R, H]
            scores = _gather(S_tab, idx)  # [C, B, pos, H]
            v = _gather(KV.view(C, R, 2, H * dh)[:, :, 1].contiguous(), idx).view(C, B, n_pos, H, dh)
        else:
            kv = _gather(KV, idx).view(C, B, n_pos, 2, H, dh)
            k, v = kv[:, :, :, 0], kv[:, :, :, 1]  # [C, B, pos, H, dh]
            q_idx = idx[:, :, last] - starts[last]  # [C, B] query table rows
            q = _gather(Qt, q_idx).view(C, B, 1, H, dh)
            scores = (k * q).sum(-1) * scale  # [C, B, pos, H]
        pattern = scores.softmax(dim=2)
        mixed = pattern if alpha == 1 else alpha * pattern + (1 - alpha)  # α·softmax + (1 − α)·J
        z = (mixed.unsqueeze(-1) * v).sum(2)  # [C, B, H, dh]
        x_last = _gather(X, idx[:, :, last])  # [C, B, D]
        resid_mid = torch.baddbmm(x_last + w[a + "b_O"].unsqueeze(1), z.view(C, B, H * dh),
                                  W_O.reshape(C, H * dh, D))  # [C, B, D]
        pre = torch.baddbmm(w["blocks.0.mlp.b_in"].unsqueeze(1), resid_mid, W_in)  # [C, B, M]
        post = act(pre)
        resid_post = torch.baddbmm(resid_mid + w["blocks.0.mlp.b_out"].unsqueeze(1), post, W_out)
        logits = torch.baddbmm(w["unembed.b_U"].unsqueeze(1), resid_post, W_U)  # [C, B, P]
        loss, dlogits = _cross_entropy(logits, labels[rows])

        # ---- backward (closed form of the forward above)
        torch.bmm(resid_post.transpose(1, 2), dlogits, out=_target(out, "unembed.W_U", (C, D, W_U.shape[-1]), dlogits))
        _sum_rows(out, "unembed.b_U", dlogits)
        d_resid = torch.bmm(dlogits, W_U.transpose(1, 2))  # [C, B, D]
        torch.bmm(post.transpose(1, 2), d_resid, out=_target(out, "blocks.0.mlp.W_out", tuple(W_out.shape), dlogits))
        _sum_rows(out, "blocks.0.mlp.b_out", d_resid)
        d_pre = dact(torch.bmm(d_resid, W_out.transpose(1, 2)), pre)  # [C, B, M]
        torch.bmm(resid_mid.transpose(1, 2), d_pre, out=_target(out, "blocks.0.mlp.W_in", tuple(W_in.shape), dlogits))
        _sum_rows(out, "blocks.0.mlp.b_in", d_pre)
        d_mid = torch.baddbmm(d_resid, d_pre, W_in.transpose(1, 2))  # [C, B, D]
        torch.bmm(z.view(C, B, H * dh).transpose(1, 2), d_mid,
                  out=_target(out, a + "W_O", (C, H * dh, D), dlogits))
        _sum_rows(out, a + "b_O", d_mid)
        dz = torch.bmm(d_mid, W_O.reshape(C, H * dh, D).transpose(1, 2)).view(C, B, 1, H, dh)
        d_pattern = (dz * v).sum(-1)  # [C, B, pos, H]
        if alpha != 1:
            d_pattern.mul_(alpha)
        d_scores = pattern * (d_pattern - (pattern * d_pattern).sum(2, keepdim=True))
        d_scores.mul_(scale)
        if one_query:
            dS_tab = _scatter(d_scores, idx, R)  # [C, R, H]
            dKV = X.new_empty(C, R, 2, H, dh)
            torch.mul(dS_tab.unsqueeze(-1), Qt.view(C, 1, H, dh), out=dKV[:, :, 0])  # dK per table row
            dKV[:, :, 1] = _scatter(mixed.unsqueeze(-1) * dz, idx, R)  # dV
            dKV = dKV.view(C, R, 2 * H * dh)
            dQt = (dS_tab.unsqueeze(-1) * K_tab).sum(1).view(C, 1, H * dh)  # [C, 1, H·dh]
        else:
            dkv = X.new_empty(C, B, n_pos, 2, H, dh)
            torch.mul(mixed.unsqueeze(-1), dz, out=dkv[:, :, :, 1])  # dv
            torch.mul(d_scores.unsqueeze(-1), q, out=dkv[:, :, :, 0])  # dk
            dq = (d_scores.unsqueeze(-1) * k).sum(2)  # [C, B, H, dh]
            dKV = _scatter(dkv.view(C, B, n_pos, 2 * H * dh), idx, R)  # [C, R, 2·H·dh]
            dQt = _scatter(dq.view(C, B, H * dh), q_idx, Xq.shape[1])  # [C, Rq, H·dh]
        dX = torch.bmm(dKV, W_KV.transpose(1, 2))  # [C, R, D]
        dX = dX + _scatter(d_mid, idx[:, :, last], R)
        dX[:, q_rows] += torch.bmm(dQt, W_Qf.transpose(1, 2))
        dW_KV = torch.bmm(X.transpose(1, 2), dKV).view(C, D, 2, H, dh).permute(0, 2, 3, 1, 4)  # [C, 2, H, D, dh]
        _write(out, a + "W_K", dW_KV[:, 0])
        _write(out, a + "W_V", dW_KV[:, 1])
        db_KV = dKV.sum(1).view(C, 2, H, dh)
        _write(out, a + "b_K", db_KV[:, 0])
        _write(out, a + "b_V", db_KV[:, 1])
        _write(out, a + "W_Q", torch.bmm(Xq.transpose(1, 2), dQt).view(C, D, H, dh).permute(0, 2, 1, 3))
        _write(out, a + "b_Q", dQt.sum(1).view(C, H, dh))
        if "embed.W_E" in out:
            dW_E = out["embed.W_E"]
            dW_E.zero_()
            dW_E.index_add_(1, table_token, dX)
        if "pos_embed.W_pos" in out:
            dW_pos = out["pos_embed.W_pos"]
            dW_pos.zero_()
            dW_pos.index_add_(1, table_pos, dX)
        return loss

    return loss_and_grad


def _target(out: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Where a matrix product's gradient goes: the caller's buffer (viewed as ``shape``) or a scratch tensor of
    ``like``'s dtype and device."""
    if name in out:
        return out[name].view(shape)
    return like.new_empty(shape)


def mlp_loss_and_grad(cfg: ModelConfig, tokens: torch.Tensor, labels: torch.Tensor) -> LossAndGrad:
    """Loss-and-gradient function of the MLP family on ``tokens [n, ≥2]`` (``a``, ``b`` first), ``labels [n]``."""
    act, dact = _act_and_grad(cfg.act_fn)
    depth = len(cfg.hidden)
    concat = cfg.combine == "concat"

    def loss_and_grad(w: Stacked, rows: torch.Tensor, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        W_E = w["embed.W_E"]  # [C, p, d]
        tok = tokens[rows]  # [C, B, pos]
        e_a, e_b = _gather(W_E, tok[:, :, 0]), _gather(W_E, tok[:, :, 1])  # [C, B, d]
        h = torch.cat([e_a, e_b], dim=-1) if concat else e_a + e_b
        inputs, pres = [], []
        for i in range(depth):
            inputs.append(h)
            pre = torch.baddbmm(w[f"mlp.{i}.b"].unsqueeze(1), h, w[f"mlp.{i}.W"])
            pres.append(pre)
            h = act(pre)
        logits = torch.baddbmm(w["unembed.b_U"].unsqueeze(1), h, w["unembed.W_U"])
        loss, dlogits = _cross_entropy(logits, labels[rows])

        W_U = w["unembed.W_U"]
        torch.bmm(h.transpose(1, 2), dlogits, out=_target(out, "unembed.W_U", tuple(W_U.shape), dlogits))
        _sum_rows(out, "unembed.b_U", dlogits)
        dh = torch.bmm(dlogits, W_U.transpose(1, 2))
        for i in reversed(range(depth)):
            W = w[f"mlp.{i}.W"]
            d_pre = dact(dh, pres[i])
            torch.bmm(inputs[i].transpose(1, 2), d_pre, out=_target(out, f"mlp.{i}.W", tuple(W.shape), dlogits))
            _sum_rows(out, f"mlp.{i}.b", d_pre)
            dh = torch.bmm(d_pre, W.transpose(1, 2))
        if "embed.W_E" in out:
            d = W_E.shape[-1]
            d_a, d_b = (dh[..., :d], dh[..., d:]) if concat else (dh, dh)
            p = W_E.shape[1]
            out["embed.W_E"].copy_(_scatter(d_a, tok[:, :, 0], p) + _scatter(d_b, tok[:, :, 1], p))
        return loss

    return loss_and_grad


def deep_transformer_loss_and_grad(cfg: ModelConfig, tokens: torch.Tensor, labels: torch.Tensor) -> LossAndGrad:
    """Loss-and-gradient function of a transformer of any depth on ``tokens [n, pos]``, ``labels [n]``:
    ``vmap(grad_and_value)`` over the chains of the full-sequence forward (no closed form), the same loss as the
    written-out engines (float32 log-softmax, the mean over the rows in float64)."""
    from torch.func import grad_and_value, vmap

    from claimlens.models.transformer import deep_forward

    if not cfg.equals_token and tokens.shape[1] == 3:
        tokens = tokens[:, :2]  # the model reads [a, b]

    def loss(w: Stacked, rows: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(deep_forward(w, tokens[rows], cfg, cache=False).logits, dim=-1)
        return -logp.gather(-1, labels[rows].unsqueeze(-1)).double().mean()

    step = vmap(grad_and_value(loss), in_dims=(0, 0))

    def loss_and_grad(w: Stacked, rows: torch.Tensor, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        grads, value = step(dict(w), rows)
        for name, buf in out.items():
            buf.copy_(grads[name].view_as(buf))
        return value

    return loss_and_grad


def loss_and_grad_fn(cfg: ModelConfig, tokens: torch.Tensor, labels: torch.Tensor) -> LossAndGrad:
    """The written-out loss-and-gradient function for a model of ``cfg`` on the data ``tokens``, ``labels``.

    Returns ``f(w, rows, out) -> loss [C]``: ``w`` maps every parameter name to ``[C, *shape]``; ``rows [C, B]``
    (long) picks each chain's rows of the data; the gradient of each chain's mean loss is written into ``out[name]``
    (``[C, *shape]``, float32) for the names ``out`` holds; for a transformer of several layers, autograd
    (:func:`deep_transformer_loss_and_grad`). Raises ``ValueError`` for an activation other than relu / gelu."""
    tokens, labels = tokens.long(), labels.long()
    if cfg.kind == "transformer" and cfg.n_layers != 1:
        return deep_transformer_loss_and_grad(cfg, tokens, labels)
    if cfg.kind == "transformer":
        return transformer_loss_and_grad(cfg, tokens, labels)
    return mlp_loss_and_grad(cfg, tokens, labels)

"""State-dict layouts of the published codebases, converted to claimlens's property format (see
:mod:`claimlens.models` for the names and shapes).

Recognised, by their keys and shapes:

* TransformerLens property format (``HookedTransformer.state_dict()``, with its ``mask`` / ``IGNORE`` buffers);
* a TransformerLens 4 ``TransformerBridge.state_dict()`` (``embed.weight``, ``blocks.0.attn.q.weight``, …: the
  bridge claimlens builds itself, :func:`claimlens.models.build_bridge`);
* the 2022 grokking layout of the progress-measures paper's code (Nanda et al. 2023; claims_catalogue §1.1):
  ``W_E [d_model, d_vocab]``, ``W_Q/W_K/W_V [heads, d_head, d_model]``, ``W_O [d_model, heads·d_head]``,
  ``W_in [d_mlp, d_model]``, ``W_out [d_model, d_mlp]``, ``W_U [d_model, d_vocab_out]`` possibly including the
  ``'='`` class (dropped, as every analysis of that code does);
* the devinterp-hackathon MLP (claims_catalogue §1.4): ``embedding``, ``linear1l``, ``linear1r``, ``linear2`` as
  ``nn.Linear`` (weight ``[out, in]``), its unembedding untied or tied to the embedding;
* the Clock/Pizza transformer (Zhong et al. 2023; claims_catalogue §1.3) is the 2022 layout plus a sidecar JSON
  config; :func:`check_clock_pizza` says whether claimlens can represent its attention and inputs.

Every conversion returns notes that the importer records in run.json (``source.conversions``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens.config import ModelConfig, TransformerConfig
from claimlens.errors import CheckpointError
from claimlens.models import param_shapes

_BUFFER_SUFFIXES = (".mask", ".IGNORE")
NV_KEYS = ("embedding.weight", "linear1r.weight", "linear2.weight")


def to_property_format(sd: Mapping[str, torch.Tensor], model: ModelConfig, p: int, *, where: str
                       ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """One state dict in claimlens's property format for ``model``, and the conversions made (a list of notes).

    Raises :class:`CheckpointError` naming ``where`` when a recognised layout is incomplete or does not fit
    ``model``; names and shapes are checked afterwards by :func:`claimlens.models.validate_params`."""
    sd = {k: v for k, v in sd.items() if not k.endswith(_BUFFER_SUFFIXES) and ".hook_" not in k}
    if model.kind == "transformer":
        out, notes = _transformer(sd, model, p, where)
    elif all(k in sd for k in NV_KEYS):
        out, notes = _nv_mlp(sd, model, p, where)
    else:
        out, notes = dict(sd), []
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}, notes


def _transformer(sd: dict[str, torch.Tensor], model: ModelConfig, p: int, where: str):
    notes: list[str] = []
    if "embed.weight" in sd and any(k.endswith(".attn.q.weight") for k in sd):
        sd, bridge_notes = _from_bridge(sd, model, where)
        notes.extend(bridge_notes)
    w_pos = sd.get("pos_embed.W_pos")
    if w_pos is not None and w_pos.dim() == 2 and w_pos.shape[0] == 2 and model.equals_token:
        raise CheckpointError(
            f"{where}: W_pos has 2 positions: the model reads [a, b] without an '=' token (the Clock/Pizza code "
            f"with eqn_sign = 0), but the spec's transformer reads [a, b, =]. Set [model] equals_token = false "
            f"(and attn_rate to the model's attention rate)")
    out = dict(sd)
    w_o = sd.get("blocks.0.attn.W_O")
    if w_o is not None and w_o.dim() == 2:  # the progress-measures paper's own layout
        notes.append("converted from the progress-measures-paper layout")
        H, dh = model.n_heads, model.d_head
        try:
            out["embed.W_E"] = sd["embed.W_E"].T
            out["blocks.0.attn.W_O"] = w_o.reshape(w_o.shape[0], H, dh).permute(1, 2, 0)
            for n in ("W_Q", "W_K", "W_V"):
                out[f"blocks.0.attn.{n}"] = sd[f"blocks.0.attn.{n}"].transpose(1, 2)
            out["blocks.0.mlp.W_in"] = sd["blocks.0.mlp.W_in"].T
            out["blocks.0.mlp.W_out"] = sd["blocks.0.mlp.W_out"].T
        except KeyError as exc:
            raise CheckpointError(f"{where}: progress-measures layout without {exc.args[0]}") from None
        except RuntimeError as exc:
            raise CheckpointError(f"{where}: weights do not fit n_heads={H}, d_head={dh}: {first_line(exc)}") from None
    w_u = out.get("unembed.W_U")
    if w_u is not None and w_u.dim() == 2 and w_u.shape[1] == p + 1:
        out["unembed.W_U"] = w_u[:, :p]
        if "unembed.b_U" in out and out["unembed.b_U"].shape == (p + 1,):
            out["unembed.b_U"] = out["unembed.b_U"][:p]
        notes.append("dropped the '=' output class (column p of W_U), as every analysis does")
    shapes = param_shapes(model, p)
    for name in ("blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O", "unembed.b_U"):
        if name not in out:
            out[name] = torch.zeros(shapes[name])
            notes.append(f"added {name} = 0 (absent in the source)")
    return out, notes


def _from_bridge(sd: dict[str, torch.Tensor], model: ModelConfig, where: str):
    """A TransformerLens 4 ``TransformerBridge.state_dict()`` (the bridge :func:`claimlens.models.build_bridge`
    builds): ``embed.weight [d_vocab, d_model]``, ``pos_embed.weight``, ``blocks.{l}.attn.{q,k,v}.weight
    [n_heads·d_head, d_model]`` and ``.bias [n_heads·d_head]``, ``attn.o.weight [d_model, n_heads·d_head]``,
    ``mlp.in.weight [d_mlp, d_model]``, ``mlp.out.weight [d_model, d_mlp]``, ``unembed.weight [d_vocab_out,
    d_model]`` (``nn.Linear`` layouts), to the property format."""
    H, dh = model.n_heads, model.d_head
    renames = {"embed.weight": "embed.W_E", "pos_embed.weight": "pos_embed.W_pos", "unembed.bias": "unembed.b_U"}
    out: dict[str, torch.Tensor] = {}
    try:
        for key, value in sd.items():
            block, _, rest = key.partition(".attn.") if ".attn." in key else key.partition(".mlp.")
            if key in renames:
                out[renames[key]] = value
            elif key == "unembed.weight":
                out["unembed.W_U"] = value.T
            elif ".attn." in key and rest in ("q.weight", "k.weight", "v.weight"):
                out[f"{block}.attn.W_{rest[0].upper()}"] = value.reshape(H, dh, value.shape[-1]).permute(0, 2, 1)
            elif ".attn." in key and rest in ("q.bias", "k.bias", "v.bias"):
                out[f"{block}.attn.b_{rest[0].upper()}"] = value.reshape(H, dh)
            elif ".attn." in key and rest == "o.weight":
                out[f"{block}.attn.W_O"] = value.T.reshape(H, dh, value.shape[0])
            elif ".attn." in key and rest == "o.bias":
                out[f"{block}.attn.b_O"] = value
            elif ".mlp." in key and rest in ("in.weight", "out.weight"):
                out[f"{block}.mlp.W_{rest.split('.')[0]}"] = value.T
            elif ".mlp." in key and rest in ("in.bias", "out.bias"):
                out[f"{block}.mlp.b_{rest.split('.')[0]}"] = value
            else:
                out[key] = value  # reported as unexpected by the validation that follows
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: TransformerLens 4 bridge weights do not fit n_heads={H}, d_head={dh}: "
                              f"{first_line(exc)}") from None
    return out, ["converted from the TransformerLens 4 TransformerBridge layout (embed.weight, attn.q.weight, …)"]


def _nv_mlp(sd: dict[str, torch.Tensor], model: ModelConfig, p: int, where: str):
    """The devinterp-hackathon MLP: ``h = act(linear1l(E[a]) + linear1r(E[b]))``, ``logits = linear2(h)`` (untied)
    or ``linear2(h) @ Eᵀ`` (tied). claimlens's ``kind = "mlp", combine = "concat"`` model computes the same with
    ``mlp.0.W = [linear1l.weightᵀ; linear1r.weightᵀ]``, ``mlp.0.b = linear1l.bias + linear1r.bias``."""
    if model.combine != "concat" or len(model.hidden) != 1:
        raise CheckpointError(
            f"{where}: the devinterp-hackathon MLP layout (embedding, linear1l/linear1r, linear2) is claimlens's "
            f"kind = \"mlp\" with combine = \"concat\" and one hidden layer; the spec says combine = "
            f"{model.combine!r}, hidden = {list(model.hidden)} (see fixtures/llc_mlp.toml)")
    notes = ["converted from the devinterp-hackathon MLP layout (embedding, linear1l/linear1r, linear2)"]
    E = sd["embedding.weight"]  # [p, d_embed]
    right_w = sd["linear1r.weight"]  # [hidden, d_embed]
    right_b = sd.get("linear1r.bias", torch.zeros(right_w.shape[0]))
    if "linear1l.weight" in sd:
        left_w, left_b = sd["linear1l.weight"], sd.get("linear1l.bias", torch.zeros(right_w.shape[0]))
    else:  # linear_1_tied: one map for both inputs
        left_w, left_b = right_w, right_b
        notes.append("linear1l absent (linear_1_tied): linear1r applied to both inputs, copied into both halves "
                     "of mlp.0.W; the learning coefficient then samples the two halves independently")
    try:
        W = torch.cat([left_w.T, right_w.T], dim=0)  # [2·d_embed, hidden]
        b = left_b + right_b
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: linear1l and linear1r do not have the same shapes: {first_line(exc)}") from None
    w2 = sd["linear2.weight"]
    b2 = sd.get("linear2.bias")
    if w2.dim() != 2 or E.dim() != 2:
        raise CheckpointError(f"{where}: embedding.weight and linear2.weight must be matrices")
    if w2.shape[0] == p:
        W_U, b_U = w2.T, b2 if b2 is not None else torch.zeros(p)
    elif w2.shape[0] == E.shape[1]:  # tie_unembed: linear2 maps to the embedding space, then @ Eᵀ
        W_U = w2.T @ E.T
        b_U = (b2 @ E.T) if b2 is not None else torch.zeros(p)
        notes.append("tied unembedding (linear2 then @ embeddingᵀ) materialised as unembed.W_U = linear2ᵀ·Eᵀ, "
                     "b_U = linear2.bias·Eᵀ: the logits are exact, but the learning coefficient samples an "
                     "untied unembedding the source model does not have")
    else:
        raise CheckpointError(f"{where}: linear2.weight has shape {list(w2.shape)}; expected [p={p}, hidden] "
                              f"(untied) or [d_embed={E.shape[1]}, hidden] (tie_unembed)")
    if b2 is None:
        notes.append("linear2 has no bias: unembed.b_U = 0")
    return {"embed.W_E": E, "mlp.0.W": W, "mlp.0.b": b, "unembed.W_U": W_U, "unembed.b_U": b_U}, notes


# ----------------------------------------------------------------------------- Clock/Pizza sidecar configs


def find_sidecar(checkpoint: Path) -> tuple[Path, dict[str, Any]] | None:
    """The JSON config saved next to a checkpoint by the Clock/Pizza code (``model_<runid>.pt`` beside
    ``config_<runid>.json``), or ``<stem>.json``; None when there is none."""
    stem = checkpoint.stem
    names = [f"config_{stem[len('model_'):]}.json"] if stem.startswith("model_") else []
    names.append(f"{stem}.json")
    for name in names:
        path = checkpoint.with_name(name)
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                if name.startswith("config_"):  # named as the Clock/Pizza code names its sidecar: it must be read
                    raise CheckpointError(f"{str(path)!r}: the config next to the checkpoint is not readable JSON: "
                                          f"{first_line(exc)}") from None
                continue  # some other JSON file that happens to share the checkpoint's name
            if isinstance(data, dict):
                return path, data
    return None


def is_clock_pizza_config(config: Mapping[str, Any]) -> bool:
    return "attn_coeff" in config or "eqn_sign" in config


def check_clock_pizza(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """The model settings a Clock/Pizza sidecar config names, as claimlens ``[model]`` fields, and the notes of
    what was read; refuses, saying why, a model claimlens cannot represent.

    The Clock/Pizza transformer attends with ``α·softmax(QKᵀ/√d_head) + (1 − α)·J`` (``J`` all ones,
    ``α = attn_coeff``), reads ``[a, b]`` or, with ``eqn_sign``, ``[a, b, =]``, and has no causal mask (with one
    layer the mask changes nothing at the final position): ``attn_rate = α``, ``equals_token = eqn_sign``,
    ``causal = false``. Not representable: more than one layer, separate vocabularies for ``a`` and ``b``
    (``diff_vocab``), the ``Linearformer`` (``use_linear``) and the Tanh MLP."""
    alpha = config.get("attn_coeff", 1)
    eqn = config.get("eqn_sign", 0)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise CheckpointError(f"{where}: attn_coeff = {alpha!r}: expected a number in [0, 1] (the attention rate α "
                              f"of α·softmax + (1 − α)·J)")
    refusals = []
    if int(config.get("n_layers", 1) or 1) != 1:
        refusals.append(f"n_layers = {config.get('n_layers')}: claimlens's transformer has one layer")
    if config.get("diff_vocab"):
        refusals.append("diff_vocab = 1: a and b use separate vocabularies (b is shifted by p)")
    if config.get("use_linear"):
        refusals.append("use_linear: the Linearformer (no attention) is another model")
    if str(config.get("act_fn", "ReLU")).lower() not in ("relu", "gelu"):
        refusals.append(f"act_fn = {config.get('act_fn')!r}: claimlens's MLP uses ReLU or GeLU")
    if refusals:
        raise CheckpointError(f"{where}: the Clock/Pizza config describes a model claimlens cannot represent: "
                              f"{'; '.join(refusals)}")
    fields = {"attn_rate": float(alpha), "equals_token": bool(eqn), "causal": False}
    note = (f"{where}: attn_coeff = {alpha:g}, eqn_sign = {int(bool(eqn))}: attention {alpha:g}·softmax + "
            f"{1 - alpha:g}·J on [a, b{', =' if eqn else ''}] without a causal mask (attn_rate = {alpha:g}, "
            f"equals_token = {str(bool(eqn)).lower()}, causal = false)")
    return fields, [note]


# The Clock/Pizza sidecar's keys, as the names of a source config (claimlens.runs.importers.source_configs):
# ``C`` is the modulus, ``frac`` the training fraction, ``epoch`` the run's length.
_CLOCK_PIZZA_KEYS = {"C": "p", "frac": "frac_train", "d_model": "d_model", "n_heads": "n_heads", "act_fn": "act_fn",
                     "lr": "lr", "weight_decay": "weight_decay", "epoch": "num_epochs"}


def clock_pizza_source_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Clock/Pizza sidecar config as a source config dict (``p``, ``frac_train``, ``d_model`` …) for a file
    that holds no config of its own; the attention settings come from :func:`check_clock_pizza`, the shapes the
    config does not give (``d_head``, ``d_mlp``) from the weights."""
    return {ours: config[theirs] for theirs, ours in _CLOCK_PIZZA_KEYS.items() if config.get(theirs) is not None}


def clock_pizza_disagreement(fields: Mapping[str, Any], model: ModelConfig, where: str) -> None:
    """Refuse a spec whose model disagrees with the Clock/Pizza config next to the weights (``fields`` from
    :func:`check_clock_pizza`): evaluating the weights with another attention or input format is another
    function. The causal mask is not compared (it changes no output of a one-layer model)."""
    if not isinstance(model, TransformerConfig):
        raise CheckpointError(f"{where}: the Clock/Pizza config next to the weights describes a transformer; the "
                              f"spec's model is kind {model.kind!r}. Give a spec with [model] kind = 'transformer'")
    wrong = [f"{k} = {getattr(model, k)!r} in the spec, {v!r} in the config" for k, v in fields.items()
             if k != "causal" and getattr(model, k) != v]
    if wrong:
        raise CheckpointError(f"{where}: the spec does not describe the model its Clock/Pizza config names: "
                              f"{'; '.join(wrong)}. Set [model] attn_rate / equals_token to the config's values")


def clock_pizza_split_unknown() -> str:
    """Why a Clock/Pizza checkpoint's split is unknown: the code splits with an unseeded
    ``torch.utils.data.random_split`` and does not save it (Zhong et al. 2023, ``code/train-main.py``)."""
    return ("the Clock/Pizza code draws the split with an unseeded torch.utils.data.random_split and saves none: "
            "no rule or seed rebuilds it (to judge train/test claims, save train_indices / test_indices, or the "
            "train_data / test_data token rows, with the model)")


def first_line(exc: Any) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__

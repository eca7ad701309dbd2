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
* the Clock/Pizza transformer (Zhong et al. 2023; claims_catalogue §1.3) is the 2022 layout, one set of
  ``blocks.{l}`` per layer (1 to 4 in the source's sweeps), plus a sidecar JSON config; :func:`check_clock_pizza`
  says whether claimlens can represent its attention and inputs;
* the Clock/Pizza repository's MLPs, with the same sidecar: the ``Linearformer`` of ``code/train-main.py``
  (``use_linear``) and ``MyModelA``–``D`` of ``code/train-linear.py`` are claimlens's MLP family
  (:func:`convert_clock_pizza_mlp`); ``MyModelX`` (separate embeddings for ``a`` and ``b``) is not.

Every conversion returns notes that the importer records in run.json (``source.conversions``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens.config import ModelConfig
from claimlens.errors import CheckpointError
from claimlens.models import layers_in, param_shapes

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
    norms = sorted(k for k in sd if k.startswith("ln_final.") or ".ln" in k)
    if norms:
        raise CheckpointError(f"{where}: LayerNorm weights ({', '.join(norms[:3])}{', …' if len(norms) > 3 else ''}): "
                              f"claimlens's transformer has no LayerNorm (Nanda's and the Clock/Pizza models have "
                              f"none), so these weights would be judged as another function; not importable")
    w_pos = sd.get("pos_embed.W_pos")
    if w_pos is not None and w_pos.dim() == 2 and w_pos.shape[0] == 2 and model.equals_token:
        raise CheckpointError(
            f"{where}: W_pos has 2 positions: the model reads [a, b] without an '=' token (the Clock/Pizza code "
            f"with eqn_sign = 0), but the spec's transformer reads [a, b, =]. Set [model] equals_token = false "
            f"(and attn_rate to the model's attention rate)")
    held = layers_in(sd)
    if held and held != model.n_layers:
        raise CheckpointError(
            f"{where}: the weights hold {held} layer{'s' if held != 1 else ''} (blocks.0 … blocks.{held - 1}) but the "
            f"config says n_layers = {model.n_layers}; correct n_layers (in the config, or [model] of the spec) to the "
            f"model that was trained")
    out = dict(sd)
    w_o = sd.get("blocks.0.attn.W_O")
    if w_o is not None and w_o.dim() == 2:  # the progress-measures paper's own layout (and the Clock/Pizza code's)
        notes.append("converted from the progress-measures-paper layout")
        H, dh = model.n_heads, model.d_head
        try:
            out["embed.W_E"] = sd["embed.W_E"].T
            for layer in range(model.n_layers):
                b = f"blocks.{layer}."
                w_o = sd[b + "attn.W_O"]  # [d_model, heads·d_head], heads outer
                out[b + "attn.W_O"] = w_o.reshape(w_o.shape[0], H, dh).permute(1, 2, 0)
                for n in ("W_Q", "W_K", "W_V"):
                    out[f"{b}attn.{n}"] = sd[f"{b}attn.{n}"].transpose(1, 2)
                out[b + "mlp.W_in"] = sd[b + "mlp.W_in"].T
                out[b + "mlp.W_out"] = sd[b + "mlp.W_out"].T
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
    biases = [f"blocks.{layer}.attn.b_{x}" for layer in range(model.n_layers) for x in "QKVO"] + ["unembed.b_U"]
    for name in biases:
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
    """A sidecar of the Clock/Pizza code: ``code/train-main.py``'s (``attn_coeff`` / ``eqn_sign``) or
    ``code/train-linear.py``'s (``model_type`` and ``d_hidden``)."""
    return "attn_coeff" in config or "eqn_sign" in config or ("model_type" in config and "d_hidden" in config)


# code/train-linear.py's MLPs (h = hidden width d_hidden): model_type → (combine, embedding width, hidden layers)
_LINEAR_MODELS = {"A": ("sum", 1, 1), "B": ("sum", 1, 2), "C": ("sum", 1, 2), "D": ("concat", 2, 1)}


def check_clock_pizza(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """The model settings a Clock/Pizza sidecar config names, as claimlens ``[model]`` fields, and the notes of
    what was read; refuses, in one line saying why, a model claimlens cannot represent.

    The Clock/Pizza transformer (``code/train-main.py``) has ``n_layers`` blocks of attention and MLP, no LayerNorm,
    attends with ``α·softmax(QKᵀ/√d_head) + (1 − α)·J`` (``J`` all ones, ``α = attn_coeff``), reads ``[a, b]``
    or, with ``eqn_sign``, ``[a, b, =]``, and has no causal mask: ``attn_rate = α``, ``equals_token = eqn_sign``,
    ``causal = false``, ``n_layers``. Its ``Linearformer`` (``use_linear``: the two embeddings concatenated, then
    ``n_layers`` Linear+activation layers of width ``d_model`` without residual) and ``code/train-linear.py``'s
    ``MyModelA``–``D`` are claimlens MLPs (fields with ``kind = "mlp"``). Not representable: separate vocabularies
    for ``a`` and ``b`` (``diff_vocab``), the Tanh activation, ``MyModelX`` (separate embeddings), the Linearformer
    with the '=' token."""
    if "model_type" in config and "attn_coeff" not in config:
        return _check_linear_script(config, where)
    alpha = config.get("attn_coeff", 1)
    eqn = config.get("eqn_sign", 0)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise CheckpointError(f"{where}: attn_coeff = {alpha!r}: expected a number in [0, 1] (the attention rate α "
                              f"of α·softmax + (1 − α)·J)")
    layers = config.get("n_layers", 1)
    layers = 1 if layers is None else layers
    refusals = []
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        refusals.append(f"n_layers = {layers!r}: expected a positive integer")
    if config.get("diff_vocab"):
        refusals.append("diff_vocab = 1: a and b use separate vocabularies (b is shifted by p); claimlens's "
                        "transformer reads both from one embedding")
    if str(config.get("act_fn", "ReLU")).lower() not in ("relu", "gelu"):
        refusals.append(f"act_fn = {config.get('act_fn')!r}: claimlens's MLP uses ReLU or GeLU")
    if config.get("use_linear") and eqn:
        refusals.append("use_linear with eqn_sign = 1: the Linearformer then reads three inputs; claimlens's MLP "
                        "reads a and b")
    if refusals:
        raise CheckpointError(f"{where}: the Clock/Pizza config describes a model claimlens cannot represent: "
                              f"{'; '.join(refusals)}")
    act = str(config.get("act_fn", "ReLU")).lower()
    if config.get("use_linear"):
        d_model = config.get("d_model")
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 2:
            raise CheckpointError(f"{where}: the Clock/Pizza config's d_model = {d_model!r}: expected an integer ≥ 2")
        fields = {"kind": "mlp", "d_embed": d_model // 2, "hidden": [d_model] * layers, "combine": "concat",
                  "act_fn": act}
        note = (f"{where}: use_linear: the Linearformer of code/train-main.py (the embeddings of a and b "
                f"concatenated, {layers} Linear+{act} layer{'s' if layers > 1 else ''} of width {d_model}, no "
                f"residual) as claimlens's MLP with combine = concat, d_embed = {d_model // 2}, hidden = "
                f"{[d_model] * layers}")
        return fields, [note]
    fields = {"attn_rate": float(alpha), "equals_token": bool(eqn), "causal": False, "n_layers": layers}
    note = (f"{where}: attn_coeff = {alpha:g}, eqn_sign = {int(bool(eqn))}, n_layers = {layers}: attention "
            f"{alpha:g}·softmax + {1 - alpha:g}·J on [a, b{', =' if eqn else ''}] without a causal mask (attn_rate = "
            f"{alpha:g}, equals_token = {str(bool(eqn)).lower()}, causal = false, n_layers = {layers})")
    return fields, [note]


def _check_linear_script(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """``code/train-linear.py``'s sidecar: ``model_type`` A–D are claimlens MLPs; X is refused."""
    kind, width = config.get("model_type"), config.get("d_hidden")
    if kind == "X":
        raise CheckpointError(f"{where}: model_type 'X' (code/train-linear.py's MyModelX) embeds a and b with separate "
                              f"embeddings (embed1, embed2); claimlens's MLP reads both through one embedding, so it "
                              f"cannot represent this model")
    if kind not in _LINEAR_MODELS:
        raise CheckpointError(f"{where}: model_type {kind!r}: code/train-linear.py defines A, B, C, D and X; "
                              f"claimlens reads A–D")
    if isinstance(width, bool) or not isinstance(width, int) or width < 2:
        raise CheckpointError(f"{where}: d_hidden = {width!r}: expected an integer ≥ 2")
    combine, div, depth = _LINEAR_MODELS[kind]
    fields = {"kind": "mlp", "d_embed": width // div, "hidden": [width] * depth, "combine": combine, "act_fn": "relu"}
    note = (f"{where}: model_type {kind!r} of code/train-linear.py (MyModel{kind}) as claimlens's MLP with "
            f"combine = {combine}, d_embed = {width // div}, hidden = {[width] * depth}")
    return fields, [note]


def clock_pizza_source_config(config: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The run a Clock/Pizza sidecar describes, in the names :func:`claimlens.runs.importers.source_configs.
    spec_from_source_config` reads: ``p`` (``C``), ``frac_train`` (``frac``), ``lr``, ``weight_decay``,
    ``num_epochs`` (``epoch``) and, for a transformer, ``d_model``, ``n_heads``, ``d_head`` if stated (else read
    from the weights' shapes) and ``act_fn``; an MLP's widths are in ``fields``."""
    out: dict[str, Any] = {}
    for ours, theirs in (("p", "C"), ("frac_train", "frac"), ("lr", "lr"), ("weight_decay", "weight_decay"),
                         ("num_epochs", "epoch")):
        if config.get(theirs) is not None and not isinstance(config[theirs], bool):
            out[ours] = config[theirs]
    if fields.get("kind", "transformer") == "transformer":
        for key in ("d_model", "n_heads", "d_head"):
            if isinstance(config.get(key), int) and not isinstance(config[key], bool):
                out[key] = config[key]
        out["act_fn"] = str(config.get("act_fn", "ReLU")).lower()
    return out


def convert_clock_pizza_mlp(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], p: int, where: str
                            ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """One state dict of a Clock/Pizza MLP (see :func:`check_clock_pizza`) in claimlens's MLP names; logits equal.

    * Linearformer (``code/train-main.py``, ``use_linear``): ``embed.W_E [d_model//2, p]``, ``blocks.{i}.W_in
      [d_model, d_model]`` (out, in) and ``b_in``, ``unembed.W_U [d_model, p]``, no unembedding bias. Its input is
      ``[E[a]; E[b]]`` padded with ``d_model mod 2`` zeros: ``mlp.0.W`` is ``W_in``'s first ``2·d_embed`` columns,
      transposed (the padding's columns read zeros).
    * ``code/train-linear.py`` ``MyModelA``–``D``: ``embed.weight [p, d]``, ``l1`` / ``l2`` as ``nn.Linear``
      (weight ``[out, in]``), ``unembed.weight [p, d_hidden]`` used as ``h @ unembed.weightᵀ`` (no bias).
      ``MyModelC`` computes ``l1(E[a]) + l1(E[b])``: the sum's layer with its bias counted twice."""
    sd = {k: v for k, v in sd.items() if not k.endswith(_BUFFER_SUFFIXES)}
    notes: list[str] = []
    try:
        if config.get("use_linear"):
            E = sd["embed.W_E"].T  # [p, d_embed]
            d = E.shape[1]
            out = {"embed.W_E": E}
            depth = layers_in(sd)
            for i in range(depth):
                W = sd[f"blocks.{i}.W_in"]
                out[f"mlp.{i}.W"] = (W[:, :2 * d] if i == 0 else W).T
                out[f"mlp.{i}.b"] = sd[f"blocks.{i}.b_in"]
            if sd["blocks.0.W_in"].shape[1] > 2 * d:
                notes.append(f"dropped the Linearformer's W_in columns {2 * d}… of blocks.0 (they read the zero "
                             f"padding of the concatenated embeddings)")
            W_U = sd["unembed.W_U"]
            notes.append("converted from the Clock/Pizza Linearformer layout (embed.W_E, blocks.{i}.W_in/b_in, "
                         "unembed.W_U)")
        else:
            kind = config.get("model_type")
            out = {"embed.W_E": sd["embed.weight"], "mlp.0.W": sd["l1.weight"].T, "mlp.0.b": sd["l1.bias"]}
            if kind == "C":
                out["mlp.0.b"] = 2 * sd["l1.bias"]
                notes.append("MyModelC's l1(E[a]) + l1(E[b]) = l1.weight·(E[a] + E[b]) + 2·l1.bias: mlp.0.b = "
                             "2·l1.bias (logits exact; the learning coefficient samples that doubled bias as one "
                             "parameter)")
            if _LINEAR_MODELS[kind][2] == 2:
                out["mlp.1.W"], out["mlp.1.b"] = sd["l2.weight"].T, sd["l2.bias"]
            W_U = sd["unembed.weight"].T  # [d_hidden, p]
            notes.append(f"converted from code/train-linear.py's MyModel{kind} layout (embed, l1{', l2' if kind in 'BC' else ''}, "
                         f"unembed)")
    except KeyError as exc:
        raise CheckpointError(f"{where}: the Clock/Pizza MLP layout its config names has no {exc.args[0]}") from None
    if W_U.dim() != 2 or W_U.shape[1] < p:
        raise CheckpointError(f"{where}: the unembedding has shape {list(W_U.shape)}; expected [width, p={p}]")
    out["unembed.W_U"] = W_U[:, :p]
    out["unembed.b_U"] = torch.zeros(p)
    notes.append("unembed.b_U = 0 (the source's unembedding has no bias)")
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}, notes


def clock_pizza_disagreement(fields: Mapping[str, Any], model: ModelConfig, where: str) -> None:
    """Refuse a spec whose model disagrees with the Clock/Pizza config next to the weights (``fields`` from
    :func:`check_clock_pizza`): evaluating the weights with another attention, input format or depth is another
    function. The causal mask is compared for models of several layers only (it changes no output of a one-layer
    model)."""
    kind = fields.get("kind", "transformer")
    if model.kind != kind:
        raise CheckpointError(f"{where}: the Clock/Pizza config next to the weights describes a{'n' if kind == 'mlp' else ''} "
                              f"{kind}; the spec's model is kind {model.kind!r}. Give a spec with [model] kind = "
                              f"{kind!r}")
    deep = fields.get("n_layers", 1) != 1
    wrong = [f"{k} = {getattr(model, k)!r} in the spec, {v!r} in the config" for k, v in fields.items()
             if k != "kind" and (k != "causal" or deep)
             and getattr(model, k) != (tuple(v) if isinstance(v, list) else v)]
    if wrong:
        raise CheckpointError(f"{where}: the spec does not describe the model its Clock/Pizza config names: "
                              f"{'; '.join(wrong)}. Set [model] {' / '.join(k for k in fields if k != 'kind')} to "
                              f"the config's values")


def clock_pizza_split_unknown() -> str:
    """Why a Clock/Pizza checkpoint's split is unknown: the code splits with an unseeded
    ``torch.utils.data.random_split`` and does not save it (Zhong et al. 2023, ``code/train-main.py``)."""
    return ("the Clock/Pizza code draws the split with an unseeded torch.utils.data.random_split and saves none: "
            "no rule or seed rebuilds it (to judge train/test claims, save train_indices / test_indices, or the "
            "train_data / test_data token rows, with the model)")


def first_line(exc: Any) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__

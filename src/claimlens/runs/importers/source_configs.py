"""Source configs → a RunSpec: Nanda's ``Config`` or a TransformerLens ``HookedTransformerConfig`` (as a dict) read
through their aliases; the model's dimensions and ``p`` missing from it read from the weights' shapes
(:func:`dims_from_shapes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from claimlens.config import RunSpec
from claimlens.errors import SpecError
from claimlens.models import layers_in
from claimlens.runs.importers.weights import strip_wrapper_prefixes

_CONFIG_ALIASES = {
    "p": ("task", "p"), "frac_train": ("task", "frac_train"), "seed": ("task", "split_seed"),
    "d_model": ("model", "d_model"), "num_heads": ("model", "n_heads"), "n_heads": ("model", "n_heads"),
    "d_head": ("model", "d_head"), "d_mlp": ("model", "d_mlp"), "n_layers": ("model", "n_layers"),
    "act_type": ("model", "act_fn"),
    "act_fn": ("model", "act_fn"), "lr": ("train", "lr"), "weight_decay": ("train", "weight_decay"),
    "wd": ("train", "weight_decay"), "num_epochs": ("train", "epochs"), "save_every": ("train", "checkpoint_every"),
    # the Clock/Pizza variant, as check_clock_pizza reads it from a sidecar config
    "attn_rate": ("model", "attn_rate"), "equals_token": ("model", "equals_token"), "causal": ("model", "causal"),
}
# Keys only a TransformerLens HookedTransformerConfig has: its "seed" is the model-init seed, never a split seed.
_TL_KEYS = ("d_vocab", "d_vocab_out", "n_ctx", "n_layers", "normalization_type")


def is_transformer_lens_config(config: Mapping[str, Any]) -> bool:
    return any(k in config for k in _TL_KEYS)


def spec_from_source_config(config: Mapping[str, Any], name: str, *, where: str,
                            weights: Mapping[str, torch.Tensor] | None = None,
                            notes: list[str] | None = None, fields: Mapping[str, Any] | None = None) -> RunSpec:
    """A RunSpec from a published config dict (Nanda's ``Config`` or a TransformerLens ``HookedTransformerConfig``
    as a dict); unknown keys ignored. ``fields``: ``[model]`` settings read elsewhere (a Clock/Pizza sidecar's,
    :func:`claimlens.runs.layouts.check_clock_pizza`), over the config's. ``p`` and the model's dimensions missing
    from both (``n_layers`` and ``d_head`` included) are read from the shapes of ``weights`` (property or
    progress-measures layout); a TL config's ``seed`` is never taken as split seed."""
    notes = notes if notes is not None else []
    tl = is_transformer_lens_config(config)
    tables: dict[str, dict[str, Any]] = {"task": {}, "model": {"kind": "transformer"}, "train": {}}
    for key, value in config.items():
        if key not in _CONFIG_ALIASES or value is None or (tl and key == "seed"):
            continue
        table, field = _CONFIG_ALIASES[key]
        if field == "act_fn" and isinstance(value, str):
            value = value.lower()
        if field in ("lr", "weight_decay", "frac_train"):
            value = float(value)
        tables[table][field] = value
    if tl:
        _read_tl_config(config, tables, where, notes)
    tables["model"].update(fields or {})
    if weights is not None and tables["model"]["kind"] == "transformer":
        _fill_from_shapes(weights, tables, notes)
    if "p" not in tables["task"]:
        raise SpecError(f"{where}: the config has no 'p' (nor 'd_vocab_out') and the weights do not show it; "
                        f"pass --spec SPEC.toml describing the run")
    tables["train"].setdefault("checkpoint_every", 1)
    tables["train"].setdefault("epochs", max(tables["train"].get("checkpoint_every", 1), 1))
    return RunSpec.from_dict({"name": name, **tables}, source=f"{where} [config]")


def _read_tl_config(config: Mapping[str, Any], tables: dict[str, dict[str, Any]], where: str,
                    notes: list[str]) -> None:
    task = tables["task"]
    if "p" not in task and isinstance(config.get("d_vocab_out"), int) and config["d_vocab_out"] > 0:
        task["p"] = config["d_vocab_out"]
        notes.append("p read from the TransformerLens config's d_vocab_out")
    elif "p" not in task and isinstance(config.get("d_vocab"), int) and config["d_vocab"] > 1:
        task["p"] = config["d_vocab"] - 1
        notes.append("p read from the TransformerLens config's d_vocab - 1")
    if config.get("n_ctx", 3) != 3:
        raise SpecError(f"{where}: config n_ctx = {config['n_ctx']!r}; claimlens models transformers on [a, b, =] "
                        f"inputs (n_ctx = 3)")
    if config.get("normalization_type") not in (None, "None"):
        raise SpecError(f"{where}: config normalization_type = {config['normalization_type']!r}; claimlens's "
                        f"transformer has no LayerNorm (normalization_type None): not importable")
    if config.get("attention_dir") == "bidirectional":  # matters from two layers on
        tables["model"]["causal"] = False
        notes.append("attention_dir 'bidirectional': causal = false")
    if "seed" in config:
        notes.append(f"the config's seed ({config['seed']!r}) is TransformerLens's model-init seed; not used as "
                     f"split seed")


def dims_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """p, d_model, n_layers, n_heads, d_head, d_mlp of a transformer state dict (property format
    ``W_Q [heads, d_model, d_head]`` or the progress-measures layout ``W_Q [heads, d_head, d_model]``; ``d_head``
    need not be ``d_model / heads``)."""
    out: dict[str, int] = {}
    w_pos, w_q, w_e = sd.get("pos_embed.W_pos"), sd.get("blocks.0.attn.W_Q"), sd.get("embed.W_E")
    if w_pos is None or w_pos.dim() != 2:
        return out
    d_model = out["d_model"] = int(w_pos.shape[1])
    if layers_in(sd):
        out["n_layers"] = layers_in(sd)
    if w_q is not None and w_q.dim() == 3:
        out["n_heads"] = int(w_q.shape[0])
        out["d_head"] = int(w_q.shape[2] if w_q.shape[1] == d_model else w_q.shape[1])
    w_in = sd.get("blocks.0.mlp.W_in")
    if w_in is not None and w_in.dim() == 2:
        out["d_mlp"] = int(w_in.shape[1] if w_in.shape[0] == d_model else w_in.shape[0])
    if w_e is not None and w_e.dim() == 2:
        d_vocab = int(w_e.shape[0] if w_e.shape[1] == d_model else w_e.shape[1])
        out["p"] = d_vocab - 1 if w_pos.shape[0] == 3 else d_vocab  # two positions: [a, b], no '=' in the vocabulary
    return out


def _fill_from_shapes(sd: Mapping[str, torch.Tensor], tables: dict[str, dict[str, Any]], notes: list[str]) -> None:
    dims = dims_from_shapes(strip_wrapper_prefixes(sd)[0])
    taken = []
    for key, value in dims.items():
        table = tables["task"] if key == "p" else tables["model"]
        if key not in table:
            table[key] = value
            taken.append(f"{key}={value}")
    if taken:
        notes.append(f"read from the weights' shapes (no config value): {', '.join(taken)}")

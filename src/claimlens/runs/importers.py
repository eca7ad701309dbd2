"""Importers: turn checkpoints in the formats researchers already have into a claimlens run.

Sources:

* a file holding a list of checkpoints (``state_dicts`` / ``checkpoints``) with their epochs (``epochs`` /
  ``checkpoint_epochs``) and usually a ``config``: Nanda/ARENA's ``full_run_data.pth``, the TransformerLens demo's
  save cell; optionally the logged losses (``train_losses`` / ``test_losses``), the split (``train_indices`` /
  ``test_indices``, or token rows ``train_data`` / ``test_data``) and the optimizer state;
* a file holding one model (under ``model`` / ``model_state_dict`` / ``state_dict``, or itself a state dict) and
  the ``epoch`` it was saved at: a single-checkpoint run;
* a folder of checkpoint files (``*.pth``, ``*.pt``, ``*.ckpt``, ``*.safetensors``) with a ``spec.toml``, the
  epoch of each read from the file (``epoch``) or from its name (``epoch_12``, ``epoch=3-step=400``, a single
  number, or ``--epoch-pattern``).

Layouts (:mod:`claimlens.runs.layouts`): TransformerLens property format, the 2022 grokking layout, the
devinterp-hackathon MLP; a Clock/Pizza checkpoint's sidecar config is read and its attention checked. Every file
is read weights-only (:mod:`claimlens.runs.safe_load`). The file's own evidence (:mod:`claimlens.runs.evidence`)
is checked against its weights: logged losses are recomputed at the checkpoint epochs, a split the file does not
store is found by the sources' split rules from the logged train loss (never guessed), the optimizer state's
weight decay is compared with the config. The run is written to a temporary folder and moved into place only
when complete, so a failed import leaves nothing behind and overwrites nothing.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from claimlens._io import atomic_write_bytes, load_tensors
from claimlens.config import RunSpec
from claimlens.core.losses import cross_entropy_f64
from claimlens.errors import CheckpointError, RunError, SpecError, UnsafeCheckpointError
from claimlens.models import fingerprint, forward, frozen_params, validate_params
from claimlens.runs import evidence, safe_load
from claimlens.runs.layouts import (
    check_clock_pizza,
    clock_pizza_disagreement,
    clock_pizza_split_refusal,
    find_sidecar,
    first_line,
    is_clock_pizza_config,
    to_property_format,
)
from claimlens.runs.store import Run, RunWriter
from claimlens.tasks import ModularAddition, grid_labels, grid_tokens, nanda_split

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


# ----------------------------------------------------------------------------- safe reading

# Top-level keys an import needs; an unsafe object anywhere else (a config, an optimizer, an argparse
# Namespace) can be read as an inert placeholder and ignored once --spec describes the run.
_WEIGHT_LIST_KEYS = ("state_dicts", "checkpoints")
_WEIGHT_KEYS = ("model", "model_state_dict", "state_dict")
_EPOCH_LIST_KEYS = ("epochs", "checkpoint_epochs")
_NEEDED_KEYS = (*_WEIGHT_LIST_KEYS, *_WEIGHT_KEYS, *_EPOCH_LIST_KEYS, "epoch", "train_indices", "test_indices",
                "train_data", "test_data", "train_losses", "test_losses")


def safe_torch_load(path: Path, *, spec_given: bool = False, notes: list[str] | None = None) -> Any:
    """Read ``path`` weights-only on the CPU (numeric numpy and inert config stand-ins allowed, see
    :mod:`claimlens.runs.safe_load`), with errors that say what is wrong with the file.

    A file asking for other globals is refused, listing every one with the key holding it. When they all sit
    in keys the import does not need (a config, an optimizer) and ``spec_given``, those keys are read as inert
    placeholders and dropped (a line is added to ``notes``)."""
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist or is not a file")
    text = _text_file(path)
    if text:
        raise CheckpointError(f"{str(path)!r} is a text file ({text}), not a torch checkpoint"
                              + (": fetch the real file with `git lfs pull`" if "Git LFS" in text else ""))
    try:
        return safe_load.load(path)
    except pickle.UnpicklingError as exc:
        if not re.search(r"global|numpy|allowlisted", str(exc), re.IGNORECASE):  # garbage, not a pickle asking for code
            raise _unreadable(path, exc) from None
        return _load_with_unsafe_globals(path, exc, spec_given, notes)
    except Exception as exc:  # noqa: BLE001 - whatever torch's unpickler raises on a damaged file (KeyError, …)
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    reason = first_line(exc).split(". ")[0]
    if "weights_only" in reason or "Weights only load failed" in reason:
        reason = type(exc).__name__  # torch's advice to load with weights_only=False is not ours to give
    detail = type(exc).__name__ + ("" if reason == type(exc).__name__ else f": {reason[:160]}")
    if path.suffix == ".safetensors":
        return CheckpointError(f"{str(path)!r} is not a readable safetensors file (truncated or corrupt: {detail}). "
                               f"Copy or download it again, or re-save it with safetensors.torch.save_file")
    return CheckpointError(f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt: {detail}). Copy "
                           f"or download it again, or re-save it with torch.save")


def _text_file(path: Path) -> str | None:
    """What a text file posing as a checkpoint is (a Git LFS pointer, JSON, other text); None for binary files."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head or b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("version https://git-lfs"):
        return "a Git LFS pointer"
    if text.lstrip()[:1] in ("{", "["):
        return "JSON"
    return "plain text" if all(c.isprintable() or c.isspace() for c in text) else None


def _load_with_unsafe_globals(path: Path, exc: Exception, spec_given: bool, notes: list[str] | None) -> Any:
    try:
        found = safe_load.unsafe_globals(path)
    except Exception:  # noqa: BLE001 - diagnosis is best effort; the refusal below still names torch's reason
        found = []
    keys = sorted({_top_key(where) for where, _ in found})
    spec_helps = bool(found) and all(k not in _NEEDED_KEYS and k != "(top level)" for k in keys) \
        and not any(name.startswith("numpy.dtype(") for _, name in found)  # object arrays cannot be skipped
    if spec_helps and spec_given:
        data = safe_load.load(path, placeholders=tuple(sorted({name for _, name in found})))
        if notes is not None:
            notes.append(f"ignored {keys} (objects of classes claimlens does not load; the run is described "
                         f"by --spec)")
        return {k: v for k, v in data.items() if k not in keys}
    listing = "; ".join(f"{where}: {name}" for where, name in found) or _unsafe_detail(str(exc))
    if spec_helps:
        advice = (f"--spec can help: with --spec SPEC.toml describing the run, claimlens reads {keys} as inert "
                  f"placeholders and ignores them")
    else:
        advice = ("--spec cannot help: the weights, epochs, split or losses themselves need them. Re-save the file "
                  "holding only tensors, dicts, lists, numbers and strings (model.state_dict(), the config as a "
                  "plain dict)")
    raise UnsafeCheckpointError(
        f"{str(path)!r}: refused to unpickle it: it needs Python objects other than tensors, plain containers, "
        f"numeric numpy and known config classes ({listing}). claimlens loads .pth files with "
        f"torch.load(weights_only=True) so that a checkpoint cannot run code. {advice}."
    ) from None


def _top_key(where: str) -> str:
    return re.split(r"[.\[]", where, maxsplit=1)[0] if where != "(top level)" else where


def _unsafe_detail(message: str) -> str:
    match = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    if match:
        return f"it asks for the global {match.group(1)}"
    for line in message.splitlines():
        if "Unsupported" in line or "not allowed" in line:
            return line.strip()
    return first_line(message)




# ----------------------------------------------------------------------------- finding the weights


_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, *, where: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict in ``obj`` (itself, or under ``model`` / ``model_state_dict`` / ``state_dict``) and the key
    it was found under. Raises :class:`CheckpointError` listing the keys present when nothing fits."""
    if is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in _WEIGHT_KEYS:
            if is_state_dict(obj.get(key)):
                return dict(obj[key]), key
    raise CheckpointError(
        f"{where} does not hold a state dict (a mapping of names to tensors), neither at the top level nor "
        f"under {list(_WEIGHT_KEYS)}; {_describe_keys(obj)}. Re-save it as {{'model': model.state_dict(), ...}}"
    )


def _describe_keys(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return f"it holds a {type(obj).__name__}"
    items = [f"{k!s}: {type(v).__name__}" for k, v in list(obj.items())[:20]]
    return f"keys present: {{{', '.join(items)}}}"


def strip_wrapper_prefixes(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove ``_orig_mod.`` (torch.compile) / ``module.`` (DataParallel, DDP) when *every* key carries it."""
    stripped: list[str] = []
    out = dict(sd)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                stripped.append(prefix)
                changed = True
    return out, stripped


def load_state_dict_file(path: Path, *, spec_given: bool = True) -> dict[str, torch.Tensor]:
    return read_checkpoint_file(path, spec_given=spec_given)[0]


def read_checkpoint_file(path: Path, *, spec_given: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One checkpoint file: its state dict (unwrapped, prefixes stripped) and what was found (``container``,
    ``prefixes``, the ``epoch`` it stores if any)."""
    if path.suffix == ".safetensors":
        return load_tensors(path, what="state-dict file"), {}
    obj = safe_torch_load(path, spec_given=spec_given)
    sd, container = unwrap_state_dict(obj, where=repr(str(path)))
    sd, prefixes = strip_wrapper_prefixes(sd)
    info: dict[str, Any] = {"container": container, "prefixes": prefixes}
    epoch = obj.get("epoch") if isinstance(obj, Mapping) and container else None
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        info["epoch"] = epoch
    return sd, info


# ----------------------------------------------------------------------------- configs


_CONFIG_ALIASES = {
    "p": ("task", "p"), "frac_train": ("task", "frac_train"), "seed": ("task", "split_seed"),
    "d_model": ("model", "d_model"), "num_heads": ("model", "n_heads"), "n_heads": ("model", "n_heads"),
    "d_head": ("model", "d_head"), "d_mlp": ("model", "d_mlp"), "act_type": ("model", "act_fn"),
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
                            notes: list[str] | None = None) -> RunSpec:
    """A RunSpec from a published config dict (Nanda's ``Config`` or a TransformerLens ``HookedTransformerConfig``
    as a dict); unknown keys ignored. ``p`` and the model's dimensions missing from it are read from the shapes
    of ``weights`` (property or progress-measures layout); a TL config's ``seed`` is never taken as split seed."""
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
    if weights is not None:
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
    for key, want in (("n_ctx", 3), ("n_layers", 1)):
        if config.get(key, want) != want:
            raise SpecError(f"{where}: config {key} = {config[key]!r}; claimlens models one-layer transformers "
                            f"on [a, b, =] inputs ({key} = {want})")
    if config.get("normalization_type") not in (None, "None"):
        raise SpecError(f"{where}: config normalization_type = {config['normalization_type']!r}; claimlens's "
                        f"transformer has no LayerNorm (normalization_type None)")
    if "seed" in config:
        notes.append(f"the config's seed ({config['seed']!r}) is TransformerLens's model-init seed; not used as "
                     f"split seed")


def dims_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """p, d_model, n_heads, d_head, d_mlp of a one-layer transformer state dict (property format
    ``W_Q [heads, d_model, d_head]`` or the progress-measures layout ``W_Q [heads, d_head, d_model]``)."""
    out: dict[str, int] = {}
    w_pos, w_q, w_e = sd.get("pos_embed.W_pos"), sd.get("blocks.0.attn.W_Q"), sd.get("embed.W_E")
    if w_pos is None or w_pos.dim() != 2:
        return out
    d_model = out["d_model"] = int(w_pos.shape[1])
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


# ----------------------------------------------------------------------------- the importers


def import_run(source: str | Path, out: str | Path, *, spec: RunSpec | None = None, name: str | None = None,
               checkpoint_every: int | None = None, epoch_pattern: str | None = None,
               final_epoch: int | None = None, ignore_logged_losses: bool = False, progress: bool = True) -> Run:
    """Import ``source`` (a ``full_run_data.pth``-style file, a single-checkpoint file, or a folder of
    checkpoint files) into ``out``. See the README's "Importing runs" for the formats and each refusal.

    ``ignore_logged_losses``: keep the file's logged losses out of the import (not verified, not used to find a
    split), for files whose logged values are not the model's cross entropy. Raises :class:`CheckpointError`,
    :class:`SpecError` or :class:`UnsafeCheckpointError` with the reason and the next step; nothing is written
    then."""
    source, out = Path(source), Path(out)
    if spec is not None and (spec.task.is_sequences or spec.model.kind == "attn_only"):
        raise SpecError(f"spec {spec.name!r} is an attention-only model of the repeated-subsequence task: importing "
                        f"its checkpoints is not supported yet (only modular-addition models); train it with "
                        f"`claimlens train SPEC --out DIR` and judge it with `pytest claims/ --run DIR`")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {str(out)!r} already exists and is not empty; nothing was written. Choose a new "
                       f"--out, or remove that folder first")
    if not source.exists():
        raise CheckpointError(f"import source {str(source)!r} does not exist")
    name = name or (spec.name if spec else source.stem.replace("full_run_data", "imported") or "imported")
    if source.is_dir():
        epochs, state_dicts, spec, meta = _read_folder(source, spec, name, epoch_pattern)
    else:
        epochs, state_dicts, spec, meta = _read_full_run(source, spec, name, checkpoint_every, final_epoch,
                                                         ignore_logged_losses)
    return _write(out, spec, epochs, state_dicts, meta, progress=progress)


def _check_epochs(epochs: Any, n: int, where: str) -> list[int]:
    if not isinstance(epochs, (list, tuple)) and not (isinstance(epochs, torch.Tensor) and epochs.dim() == 1):
        raise CheckpointError(f"{where}: 'epochs' must be a list of integers, got {type(epochs).__name__}")
    epochs = [int(e) for e in (epochs.tolist() if isinstance(epochs, torch.Tensor) else epochs)]
    if len(epochs) != n:
        raise CheckpointError(f"{where}: {len(epochs)} epochs for {n} state dicts; they must pair up one to one")
    for i in range(1, len(epochs)):
        if epochs[i] <= epochs[i - 1]:
            raise CheckpointError(
                f"{where}: epochs must be strictly increasing; epoch {epochs[i]} at position {i} follows {epochs[i - 1]}"
            )
    if epochs and epochs[0] < 0:
        raise CheckpointError(f"{where}: epochs must be ≥ 0; got {epochs[0]}")
    return epochs


def _read_full_run(path: Path, spec: RunSpec | None, name: str, checkpoint_every: int | None,
                   final_epoch: int | None, ignore_logged: bool = False):
    notes: list[str] = []
    spec_given = spec is not None
    data = safe_torch_load(path, spec_given=spec_given, notes=notes)
    where = str(path)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected a dict holding the weights ('state_dicts' list, or 'model' / "
                              f"'model_state_dict' / 'state_dict'); got {type(data).__name__}")
    sidecar = find_sidecar(path)
    clock_pizza = sidecar is not None and is_clock_pizza_config(sidecar[1])
    cp_fields: dict = {}
    if clock_pizza:
        cp_fields, cp_notes = check_clock_pizza(sidecar[1], f"{where} (its {sidecar[0].name})")
        notes.extend(cp_notes)
        if spec_given:
            clock_pizza_disagreement(cp_fields, spec.model, f"{where} (its {sidecar[0].name})")
        if not any(data.get(k) is not None for k in ("train_indices", "test_indices", "train_data", "test_data")):
            raise clock_pizza_split_refusal(where)
        final_epoch = final_epoch if final_epoch is not None else _sidecar_epoch(sidecar[1], data, notes)
    state_dicts, epochs, meta = _weights_and_epochs(data, where, checkpoint_every, final_epoch)
    config = data.get("config")
    if spec is None:
        if not isinstance(config, Mapping):
            raise SpecError(f"{where}: no 'config' dict in the file; pass --spec SPEC.toml describing the run")
        spec = spec_from_source_config({**config, **cp_fields}, name, where=where, weights=state_dicts[-1],
                                       notes=notes)
        meta["train_read_from_source"] = sorted({f for k, (t, f) in _CONFIG_ALIASES.items()
                                                 if t == "train" and config.get(k) is not None}
                                                - {"epochs", "checkpoint_every"})
    spec = _reconcile_optimizer(spec, data, config, spec_given, meta, notes)
    logged: dict[str, evidence.LoggedCurve] = {}
    if ignore_logged:
        if any(k in data for k in evidence.LOSS_KEYS):
            notes.append("the file's logged losses were not used (--ignore-logged-losses)")
    else:
        logged, log_notes = evidence.logged_curves(data, epochs, where)
        notes.extend(log_notes)
    split = _stored_split(data, spec.task.p, where)
    if split is not None:
        meta["split"], meta["split_rule"] = split[:2], split[2]
        spec = _frac_from_split(spec, split[0], split[1])
    elif spec_given:
        meta["split_rule"] = "nanda_shuffle, rebuilt from --spec's frac_train and split_seed"
    elif _nanda_config(config):
        meta["split_rule"] = "nanda_shuffle, rebuilt from the config's frac_train and seed"
    elif "train_loss" in logged:
        found = _search_split(state_dicts[-1], epochs[-1], spec, logged, config, where)
        meta["split"], meta["split_rule"] = (found.train_idx, found.test_idx), found.description
        spec = _frac_from_split(dataclasses.replace(spec, task=dataclasses.replace(
            spec.task, split_seed=found.seed if found.rule == "nanda_shuffle" else spec.task.split_seed)),
            found.train_idx, found.test_idx)
    else:
        _refuse_rebuilt_split(config, where)
    meta["logged"], meta["where"] = logged, where
    meta["notes"] = notes + meta.get("notes", [])
    return epochs, state_dicts, spec, meta


def _sidecar_epoch(config: Mapping[str, Any], data: Mapping[str, Any], notes: list[str]) -> int | None:
    """A Clock/Pizza file is the model at the end of training: its epoch is the sidecar's ``epoch`` (the run's
    length), never a number read from the run id in the file name."""
    if isinstance(data.get("epoch"), int) or not isinstance(config.get("epoch"), int):
        return None
    notes.append(f"epoch {config['epoch']} read from the sidecar config's 'epoch' (the run's length: the file holds "
                 f"the model at the end of training)")
    return int(config["epoch"])


def _nanda_config(config: Any) -> bool:
    """A config that names Nanda's split: ``frac_train`` and a split ``seed`` (not a TransformerLens config,
    whose ``seed`` is the model-init seed)."""
    return isinstance(config, Mapping) and "seed" in config and "frac_train" in config \
        and not is_transformer_lens_config(config)


def _search_split(sd: Mapping[str, torch.Tensor], epoch: int, spec: RunSpec, logged, config: Any, where: str):
    p = spec.task.p
    params, _ = to_property_format(strip_wrapper_prefixes(sd)[0], spec.model, p, where=where)
    validate_params(params, spec.model, p, where=f"{where} (epoch {epoch})")
    with torch.no_grad():
        logits = forward(params, grid_tokens(p), spec.model).logits.double()
    per_example = torch.nn.functional.cross_entropy(logits, grid_labels(p), reduction="none")
    seeds = [int(config["seed"])] if isinstance(config, Mapping) and isinstance(config.get("seed"), int) else []
    fracs = [float(config["frac_train"])] if isinstance(config, Mapping) and isinstance(
        config.get("frac_train"), (int, float)) else []
    return evidence.search_split(per_example, p, epoch, logged, where, seeds=seeds, fracs=fracs)


def _reconcile_optimizer(spec: RunSpec, data: Mapping[str, Any], config: Any, spec_given: bool,
                         meta: dict[str, Any], notes: list[str]) -> RunSpec:
    """Compare the config's (or --spec's) weight decay, betas and initial learning rate with the optimizer state
    saved in the file. The optimizer state is what trained the model: a config value that disagrees is replaced
    by it (--spec is kept as given); either way the disagreement is recorded in run.json."""
    found = evidence.optimizer_evidence(data)
    if not found:
        return spec
    stated_keys = {"weight_decay": ("weight_decay", "wd"), "betas": ("betas",), "lr": ("lr",)}
    changes, disagree = {}, {}
    for field, keys in stated_keys.items():
        if field not in found:
            continue
        ours = getattr(spec.train, field)
        theirs = found[field]
        stated = spec_given or (isinstance(config, Mapping) and any(k in config for k in keys))
        same = all(abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
                   for a, b in zip(ours if field == "betas" else [ours], theirs if field == "betas" else [theirs]))
        if same:
            continue
        if stated:
            disagree[field] = {"spec" if spec_given else "config": list(ours) if field == "betas" else ours,
                               "optimizer": theirs}
            notes.append(f"{field}: the {'--spec' if spec_given else 'config'} says {ours}, the optimizer state "
                         f"('{found['key']}') says {theirs}; "
                         + ("kept --spec's value" if spec_given else "using the optimizer's (it trained the model)"))
        else:
            notes.append(f"{field} = {theirs} read from the optimizer state ('{found['key']}'); the config has none")
        if not spec_given:
            changes[field] = tuple(theirs) if field == "betas" else theirs
    meta["optimizer_evidence"] = {k: v for k, v in found.items() if k != "key"}
    if "train_read_from_source" in meta:
        meta["train_read_from_source"] = sorted(set(meta["train_read_from_source"]) | set(changes))
    if disagree:
        meta["config_disagrees_with_optimizer"] = disagree
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes)) if changes else spec


def _weights_and_epochs(data: Mapping[str, Any], where: str, checkpoint_every: int | None,
                        final_epoch: int | None):
    for key in _WEIGHT_LIST_KEYS:
        if isinstance(data.get(key), (list, tuple)) and data[key]:
            return _checkpoint_list(data, key, where, checkpoint_every)
    try:
        sd, container = unwrap_state_dict(data, where=where)
    except CheckpointError:
        raise CheckpointError(
            f"{where}: no 'state_dicts' / 'checkpoints' list and no single model under {list(_WEIGHT_KEYS)} "
            f"({_describe_keys(data)})") from None
    sd, prefixes = strip_wrapper_prefixes(sd)
    stored = data.get("epoch")
    epoch = final_epoch if final_epoch is not None else stored
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise CheckpointError(
            f"{where}: a single model (under {container!r}) and no 'epoch' saying when it was saved; claimlens "
            f"never guesses epochs. Pass --final-epoch N (the number of optimiser steps behind it)")
    meta: dict[str, Any] = {"format": "single_checkpoint", "container": container, "epoch_source":
                            "--final-epoch" if final_epoch is not None else "the file's 'epoch'"}
    if prefixes:
        meta["stripped_prefixes"] = prefixes
    return [sd], [epoch], meta


def _checkpoint_list(data: Mapping[str, Any], key: str, where: str, checkpoint_every: int | None):
    state_dicts, prefixes = [], set()
    for i, sd in enumerate(data[key]):
        if not is_state_dict(sd):
            raise CheckpointError(f"{where}: {key}[{i}] is not a mapping of names to tensors")
        sd, stripped = strip_wrapper_prefixes(sd)
        prefixes.update(stripped)
        state_dicts.append(sd)
    epoch_key = next((k for k in _EPOCH_LIST_KEYS if data.get(k) is not None), None)
    if epoch_key is None:
        if checkpoint_every is None:
            raise CheckpointError(
                f"{where}: no 'epochs' list saying which epoch each of the {len(state_dicts)} state dicts is; "
                f"claimlens never guesses epochs from list positions. If the checkpoints were saved every N "
                f"epochs starting at 0, say so with --checkpoint-every N"
            )
        epochs = [i * checkpoint_every for i in range(len(state_dicts))]
    else:
        epochs = _check_epochs(data[epoch_key], len(state_dicts), where)
    meta: dict[str, Any] = {"format": "full_run_data", "container": key,
                            "epoch_source": f"the file's {epoch_key!r}" if epoch_key else "--checkpoint-every"}
    if prefixes:
        meta["stripped_prefixes"] = sorted(prefixes)
    if epoch_key == "checkpoint_epochs":  # the TransformerLens demo's name and convention
        meta["epoch_convention"] = ("epochs as stored in 'checkpoint_epochs'; the TransformerLens demo records "
                                    "epoch e for the weights after e + 1 optimiser steps")
    return state_dicts, epochs, meta


def _stored_split(data: Mapping[str, Any], p: int, where: str):
    """(train_idx, test_idx, rule) from ``train_indices``/``test_indices`` or token rows ``train_data``/
    ``test_data`` (``[a, b, =]`` → index ``a·p + b``); None when the file stores no split."""
    tr, te = data.get("train_indices"), data.get("test_indices")
    if tr is not None or te is not None:
        try:
            return (torch.as_tensor(tr, dtype=torch.int64).flatten(), torch.as_tensor(te, dtype=torch.int64).flatten(),
                    "stored")
        except (TypeError, ValueError, RuntimeError):
            raise CheckpointError(f"{where}: train_indices/test_indices must be lists of integers") from None
    tr, te = data.get("train_data"), data.get("test_data")
    if tr is None and te is None:
        return None
    return _indices_from_rows(tr, p, where, "train_data"), _indices_from_rows(te, p, where, "test_data"), \
        "stored (token rows train_data/test_data, index a·p + b)"


def _indices_from_rows(rows: Any, p: int, where: str, key: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(rows, dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError):
        raise CheckpointError(f"{where}: {key} must be token rows [a, b, =] (integers)") from None
    if t.dim() != 2 or t.shape[1] < 2 or int(t[:, :2].min()) < 0 or int(t[:, :2].max()) >= p:
        raise CheckpointError(f"{where}: {key} must be rows [a, b, =] with 0 ≤ a, b < p={p}; got shape "
                              f"{list(t.shape)}")
    return t[:, 0] * p + t[:, 1]


def _frac_from_split(spec: RunSpec, train: torch.Tensor, test: torch.Tensor) -> RunSpec:
    total = len(train) + len(test)
    if total == 0 or abs(spec.task.frac_train - len(train) / total) < 1e-9:
        return spec
    frac = len(train) / total
    return dataclasses.replace(spec, task=dataclasses.replace(spec.task, frac_train=frac)) if 0 < frac < 1 else spec


def _refuse_rebuilt_split(config: Any, where: str) -> None:
    tl = isinstance(config, Mapping) and is_transformer_lens_config(config)
    raise CheckpointError(
        f"{where}: the file stores no split (no train_indices/test_indices, no train_data/test_data), holds no "
        f"logged train loss to find it by, and its config does not give Nanda's split (frac_train and a split "
        f"seed{'; a TransformerLens config' + chr(39) + 's seed is its model-init seed, and the TL demo splits with torch.randperm' if tl else ''}). "
        f"claimlens never rebuilds a split silently: store the split in the file, or pass --spec SPEC.toml whose "
        f"[task] frac_train/split_seed give Nanda's shuffle"
    )


_TAGGED_EPOCH = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_\-]?(\d+)(?!\d)", re.IGNORECASE)
# An untagged number counts only as a whole token ("ckpt-1200", "step_500", "1200") or after a word that names a
# checkpoint count ("ckpt1200"): a digit inside a run id ("model_p99zdpze5l", "run7abc") is never an epoch.
_UNTAGGED_EPOCH = re.compile(r"(?:^|[^a-z0-9]|ckpt|checkpoint|step|iter|it)(\d+)(?![a-z0-9])", re.IGNORECASE)


def epoch_from_name(stem: str, pattern: str | None = None) -> int | None:
    """The epoch in a file stem: ``pattern``'s first group, else a tagged ``epoch=12`` / ``epoch_12`` / ``ep12``,
    else the stem's only number that stands as a token of its own; None when the name does not say (no such
    number, several, or digits inside a run id)."""
    if pattern:
        match = re.search(pattern, stem)
        return int(match.group(1)) if match else None
    tagged = _TAGGED_EPOCH.findall(stem)
    if len(tagged) == 1:
        return int(tagged[0])
    if tagged:
        return None
    numbers = _UNTAGGED_EPOCH.findall(stem)
    all_numbers = re.findall(r"\d+", stem)
    return int(numbers[0]) if len(numbers) == 1 and len(all_numbers) == 1 else None


def _folder_spec(folder: Path, spec: RunSpec | None, name: str) -> RunSpec:
    if spec is not None:
        return spec
    for candidate in ("spec.toml", "run.toml"):
        if (folder / candidate).is_file():
            return dataclasses.replace(RunSpec.from_toml(folder / candidate), name=name)
    raise SpecError(
        f"{str(folder)!r}: no spec.toml in the folder; pass --spec SPEC.toml describing the run "
        f"(task p and split, model shape)"
    )


def _read_folder(folder: Path, spec: RunSpec | None, name: str, epoch_pattern: str | None = None):
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
    if not files:
        raise CheckpointError(f"{str(folder)!r} holds no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
    for f in files:
        sidecar = find_sidecar(f)
        if sidecar is not None and is_clock_pizza_config(sidecar[1]):
            check_clock_pizza(sidecar[1], f"{str(f)!r} ({sidecar[0].name})")  # refuses what cannot be represented
            refusal = clock_pizza_split_refusal(f"{str(f)!r} ({sidecar[0].name})")
            raise CheckpointError(f"{refusal} (a folder import reads no stored split: import the file itself, "
                                  f"with --spec)")
    spec = _folder_spec(folder, spec, name)
    found = {f: _file_epoch(f, epoch_pattern) for f in files}
    unknown = [f.name for f, (e, _) in found.items() if e is None]
    if unknown:
        raise CheckpointError(
            f"{str(folder)!r}: no epoch stored in the file and none readable from the name of {unknown} (a name "
            f"must carry a tagged epoch like epoch_12 / epoch=12 / ep12, or a single number). claimlens never "
            f"guesses: pass --epoch-pattern REGEX whose first group is the epoch (e.g. 'CHECKPOINT_(\\d+)_'), "
            f"or rename the files; if they are different runs, import each on its own"
        )
    by_epoch: dict[int, list[str]] = {}
    for f, (e, _) in found.items():
        by_epoch.setdefault(e, []).append(f.name)
    clashes = {e: names for e, names in by_epoch.items() if len(names) > 1}
    if clashes:
        raise CheckpointError(f"{str(folder)!r}: several files for one epoch: {clashes}; claimlens never merges "
                              f"them. Pass --epoch-pattern REGEX, or move files of other runs out of the folder")
    order = sorted(found, key=lambda f: found[f][0])
    meta: dict[str, Any] = {"format": "state_dict_folder", "folder": folder.name, "spec_given": True,
                            "where": str(folder),
                            "epoch_source": sorted({found[f][1] for f in files})}
    disagree = {f.name: {"stored": found[f][0], "name": epoch_from_name(f.stem, epoch_pattern)} for f in files
                if found[f][1].startswith("stored") and epoch_from_name(f.stem, epoch_pattern) not in (None, found[f][0])}
    if disagree:
        meta["epoch_name_disagrees"] = disagree  # the stored epoch is kept; the name may count steps or runs
    return [found[f][0] for f in order], order, spec, meta


def _file_epoch(path: Path, pattern: str | None) -> tuple[int | None, str]:
    """The epoch of one checkpoint file and where it came from: the file's own ``epoch`` key first."""
    named = epoch_from_name(path.stem, pattern)
    if path.suffix != ".safetensors":
        stored = read_checkpoint_file(path)[1].get("epoch")
        if stored is not None:
            return stored, "stored in the file ('epoch')"
    return named, "--epoch-pattern" if pattern else "file name"


def _write(out: Path, spec: RunSpec, epochs: list[int], state_dicts: Sequence[Any], meta: dict[str, Any],
           *, progress: bool) -> Run:
    p = spec.task.p
    meta.pop("spec_given", None)
    if "split" in meta:
        train_idx, test_idx = meta.pop("split")
        split_rule = meta.pop("split_rule", "stored")
    else:
        train_idx, test_idx = nanda_split(p, spec.task.frac_train, spec.task.split_seed)
        split_rule = meta.pop("split_rule", "nanda_shuffle, rebuilt from the spec's frac_train and split_seed")
    task = ModularAddition(p, train_idx, test_idx)
    try:
        task.check()
    except ValueError as exc:
        raise CheckpointError(f"stored split: {exc}") from None
    spec = dataclasses.replace(spec, train=dataclasses.replace(
        spec.train, epochs=max(epochs[-1], 1), checkpoint_every=min(spec.train.checkpoint_every, max(epochs[-1], 1))))
    created = [d for d in [out.parent, *out.parent.parents] if not d.exists()]  # removed again if the import fails
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    done = False
    try:
        logged: dict[str, evidence.LoggedCurve] = meta.pop("logged", {})
        where_source = meta.pop("where", spec.name)
        notes: set[str] = set(meta.pop("notes", []))
        writer = RunWriter.create(tmp / "run", spec, task, {"kind": "imported", "split_rule": split_rule, **meta})
        iterator = zip(epochs, state_dicts)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(list(iterator), desc=f"import {spec.name}", unit="ckpt")
        rows = []
        tokens, labels = task.tokens, task.labels
        frozen = frozen_params(spec.model, p)
        zero: set[str] | None = None  # parameters (not already frozen) that are zero at every checkpoint so far
        prints: list[str] = []
        for epoch, sd in iterator:
            where = f"checkpoint for epoch {epoch}"
            if isinstance(sd, Path):
                where = f"{sd.name} (epoch {epoch})"
                sd, info = read_checkpoint_file(sd)
                notes.update(f"stripped the wrapper prefix {x!r} from every key" for x in info.get("prefixes", []))
            params, conv = to_property_format(sd, spec.model, p, where=where)
            notes.update(conv)
            validate_params(params, spec.model, p, where=where)
            now = {k for k, v in params.items() if k not in frozen and not bool(v.any())}
            zero = now if zero is None else zero & now
            prints.append(fingerprint(params))
            writer.add_checkpoint(epoch, params)
            rows.append(_log_row(epoch, params, spec, tokens, labels, task))
        evidence.refuse_identical_checkpoints(prints, epochs, where_source)
        if logged:
            recomputed = {name: {r["epoch"]: r[name] for r in rows} for name in logged}
            writer.set_source(logged_losses=evidence.verify_logged(recomputed, logged, where_source))
            _write_source_log(tmp / "run", logged)
        writer.append_log(rows)
        writer.set_source(conversions=sorted(notes), log="computed at checkpoint epochs from the weights")
        if zero:
            writer.set_source(always_zero=sorted(zero), proposal=(
                f"{sorted(zero)} are zero at every checkpoint: if training held them fixed (the TransformerLens "
                f"grokking demo freezes every b_*), list them under [model] frozen in the spec and import again, "
                f"so that the learning coefficient does not sample directions the run never had"))
        run = writer.finish()
        if spec.model.kind == "transformer":
            _prove_bridge_load(run)
        if out.is_dir():  # an existing empty folder (checked at the start): the run takes its place
            out.rmdir()
        (tmp / "run").rename(out)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in created:  # folders this import made for --out, deepest first
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return Run.open(out)


def _write_source_log(run_dir: Path, logged: Mapping[str, evidence.LoggedCurve]) -> None:
    """The file's own logged losses, each on its own epochs, one JSON row per epoch (``source_log.jsonl``)."""
    import json

    by_epoch: dict[int, dict[str, float]] = {}
    for name, curve in logged.items():
        for epoch, value in zip(curve.epochs, curve.values):
            by_epoch.setdefault(epoch, {})[name] = value
    lines = [json.dumps({"epoch": e, **{k: v if math.isfinite(v) else None for k, v in by_epoch[e].items()}})
             for e in sorted(by_epoch)]
    atomic_write_bytes(run_dir / "source_log.jsonl", ("\n".join(lines) + "\n").encode())


@torch.no_grad()
def _log_row(epoch: int, params, spec: RunSpec, tokens, labels, task: ModularAddition) -> dict[str, float]:
    logits = forward(params, tokens, spec.model).logits
    row: dict[str, float] = {"epoch": epoch}
    for split, idx in (("train", task.train_idx), ("test", task.test_idx)):
        row[f"{split}_loss"] = cross_entropy_f64(logits[idx], labels[idx]).item()
        row[f"{split}_acc"] = (logits[idx].argmax(-1) == labels[idx]).double().mean().item()
    return row


def _prove_bridge_load(run: Run) -> None:
    """Load the final checkpoint into a TransformerLens bridge: the load must change the weights
    (checked inside ``load_into_bridge``) and the bridge must reproduce the fast path's logits."""
    from claimlens.models import bridge_activations, build_bridge, naive_forward

    params = run.final()
    tokens = run.task.tokens
    ours = forward(params, tokens, run.spec.model).logits
    if run.spec.model.attn_rate != 1:  # TransformerLens cannot express α < 1: the plain full-sequence forward
        reference, through = naive_forward(params, tokens, run.spec.model), "the plain full-sequence forward"
    else:
        bridge = build_bridge(run.spec.model, run.spec.task.p, params)
        reference, through = bridge_activations(bridge, tokens).logits, "TransformerLens"
    err = ((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()
    if err > 1e-4:
        raise CheckpointError(
            f"imported final checkpoint (epoch {run.epochs[-1]}, fingerprint {fingerprint(params)[:12]}) gives "
            f"different logits through {through} than through claimlens (max relative error {err:.2e}); "
            f"the state dict layout was not understood"
        )

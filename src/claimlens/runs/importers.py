"""Importers: turn checkpoints in the formats researchers already have into a claimlens run.

Two sources are read:

* a Nanda/ARENA-style ``full_run_data.pth``: a dict with ``state_dicts`` (a list), ``epochs`` (the
  epoch of each state dict) and ``config`` (a dict); some versions also hold ``train_losses`` /
  ``test_losses`` and the split as ``train_indices`` / ``test_indices``;
* a folder of state-dict files (``*.pth``, ``*.pt`` or ``*.safetensors``), one per checkpoint, the
  epoch being the last number in the file name (``epoch_1200.pth``, ``ckpt-1200.safetensors``).

State dicts may be in TransformerLens property format or in the layout of the progress-measures
paper's own code (``W_E [d_model, d_vocab]``, ``W_O [d_model, n_heads·d_head]``, 114 output
classes); the latter is converted. Every ``.pth`` is read with ``torch.load(weights_only=True)``:
a pickle that would run code is refused. The run is written to a temporary folder and moved into
place only when complete, so a failed import leaves nothing behind and overwrites nothing.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from claimlens._io import atomic_write_bytes, load_tensors
from claimlens.config import ModelConfig, RunSpec
from claimlens.errors import CheckpointError, RunError, SpecError, UnsafeCheckpointError
from claimlens.metrics.losses import cross_entropy_f64
from claimlens.models import fingerprint, forward, frozen_params, param_shapes, validate_params
from claimlens.runs import safe_load
from claimlens.runs.store import Run, RunWriter
from claimlens.tasks import ModularAddition, nanda_split

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
_BUFFER_SUFFIXES = (".mask", ".IGNORE")


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
    try:
        return safe_load.load(path)
    except pickle.UnpicklingError as exc:
        if not re.search(r"global|numpy|allowlisted", str(exc), re.IGNORECASE):  # garbage, not a pickle asking for code
            raise CheckpointError(f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{_first_line(exc)}") from None
        return _load_with_unsafe_globals(path, exc, spec_given, notes)
    except (RuntimeError, EOFError, ValueError, OSError, IndexError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): {_first_line(exc)}"
        ) from None


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
    return _first_line(message)


def _first_line(exc: Any) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__


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


# ----------------------------------------------------------------------------- layout conversion


def to_property_format(sd: Mapping[str, torch.Tensor], model: ModelConfig, p: int, *, where: str
                       ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert one transformer state dict to property format; returns it and the conversions made."""
    notes: list[str] = []
    sd = {k: v for k, v in sd.items() if not k.endswith(_BUFFER_SUFFIXES) and ".hook_" not in k}
    if model.kind != "transformer":
        return {k: v.to(torch.float32) for k, v in sd.items()}, notes
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
            raise CheckpointError(f"{where}: weights do not fit n_heads={H}, d_head={dh}: {_first_line(exc)}") from None
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
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}, notes


# ----------------------------------------------------------------------------- configs


_CONFIG_ALIASES = {
    "p": ("task", "p"), "frac_train": ("task", "frac_train"), "seed": ("task", "split_seed"),
    "d_model": ("model", "d_model"), "num_heads": ("model", "n_heads"), "n_heads": ("model", "n_heads"),
    "d_head": ("model", "d_head"), "d_mlp": ("model", "d_mlp"), "act_type": ("model", "act_fn"),
    "act_fn": ("model", "act_fn"), "lr": ("train", "lr"), "weight_decay": ("train", "weight_decay"),
    "wd": ("train", "weight_decay"), "num_epochs": ("train", "epochs"), "save_every": ("train", "checkpoint_every"),
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
        out["p"] = d_vocab - 1
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
               final_epoch: int | None = None, progress: bool = True) -> Run:
    """Import ``source`` (a ``full_run_data.pth``-style file, a single-checkpoint file, or a folder of
    checkpoint files) into ``out``. See the README's "Run directories" for the formats and each refusal."""
    source, out = Path(source), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {str(out)!r} already exists and is not empty; nothing was written")
    if not source.exists():
        raise CheckpointError(f"import source {str(source)!r} does not exist")
    name = name or (spec.name if spec else source.stem.replace("full_run_data", "imported") or "imported")
    if source.is_dir():
        epochs, state_dicts, spec, meta = _read_folder(source, spec, name, epoch_pattern)
    else:
        epochs, state_dicts, spec, meta = _read_full_run(source, spec, name, checkpoint_every, final_epoch)
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
                   final_epoch: int | None):
    notes: list[str] = []
    spec_given = spec is not None
    data = safe_torch_load(path, spec_given=spec_given, notes=notes)
    where = str(path)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected a dict holding the weights ('state_dicts' list, or 'model' / "
                              f"'model_state_dict' / 'state_dict'); got {type(data).__name__}")
    state_dicts, epochs, meta = _weights_and_epochs(data, where, checkpoint_every, final_epoch)
    config = data.get("config")
    if spec is None:
        if not isinstance(config, Mapping):
            raise SpecError(f"{where}: no 'config' dict in the file; pass --spec SPEC.toml describing the run")
        spec = spec_from_source_config(config, name, where=where, weights=state_dicts[-1], notes=notes)
    split = _stored_split(data, spec.task.p, where)
    if split is not None:
        meta["split"], meta["split_rule"] = split[:2], split[2]
        spec = _frac_from_split(spec, split[0], split[1])
    else:
        _allow_rebuilt_split(config, spec, where, spec_given=spec_given)
    source_log = {k: data[k] for k in ("train_losses", "test_losses") if isinstance(data.get(k), (list, tuple))}
    if source_log:
        meta["source_log"] = source_log
    meta["notes"] = notes + meta.get("notes", [])
    return epochs, state_dicts, spec, meta


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


def _allow_rebuilt_split(config: Any, spec: RunSpec, where: str, *, spec_given: bool) -> None:
    """Without a stored split, Nanda's shuffle is rebuilt only from a config that names its seed and fraction in
    Nanda's fields (or from --spec); anything else is refused rather than guessed."""
    if spec_given:
        return
    nanda = isinstance(config, Mapping) and "seed" in config and "frac_train" in config
    if nanda and not is_transformer_lens_config(config):
        return
    raise CheckpointError(
        f"{where}: the file stores no split (no train_indices/test_indices, no train_data/test_data) and its "
        f"config does not give Nanda's split (frac_train and a split seed; a TransformerLens config's 'seed' "
        f"is its model-init seed, and the TL demo splits with torch.randperm). claimlens never rebuilds a split "
        f"silently: store the split in the file, or pass --spec SPEC.toml whose [task] frac_train/split_seed give "
        f"Nanda's shuffle"
    )


_TAGGED_EPOCH = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_\-]?(\d+)(?!\d)", re.IGNORECASE)


def epoch_from_name(stem: str, pattern: str | None = None) -> int | None:
    """The epoch in a file stem: ``pattern``'s first group, else a tagged ``epoch=12`` / ``epoch_12`` / ``ep12``,
    else the stem's only number; None when the name does not say (no number, or several untagged ones)."""
    if pattern:
        match = re.search(pattern, stem)
        return int(match.group(1)) if match else None
    tagged = _TAGGED_EPOCH.findall(stem)
    if len(tagged) == 1:
        return int(tagged[0])
    numbers = re.findall(r"\d+", stem)
    return int(numbers[0]) if len(numbers) == 1 and not tagged else None


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
        split_rule = "nanda_shuffle (reconstructed from frac_train and seed)"
    task = ModularAddition(p, train_idx, test_idx)
    try:
        task.check()
    except ValueError as exc:
        raise CheckpointError(f"stored split: {exc}") from None
    spec = dataclasses.replace(spec, train=dataclasses.replace(
        spec.train, epochs=max(epochs[-1], 1), checkpoint_every=min(spec.train.checkpoint_every, max(epochs[-1], 1))))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        source_log = meta.pop("source_log", None)
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
            writer.add_checkpoint(epoch, params)
            rows.append(_log_row(epoch, params, spec, tokens, labels, task))
        writer.append_log(rows)
        if source_log:
            import json

            lines = [json.dumps({"epoch": i, **{k: float(v[i]) for k, v in source_log.items() if i < len(v)}})
                     for i in range(max(len(v) for v in source_log.values()))]
            atomic_write_bytes(tmp / "run" / "source_log.jsonl", ("\n".join(lines) + "\n").encode())
        writer.set_source(conversions=sorted(notes), log="computed at checkpoint epochs from the weights")
        if zero:
            writer.set_source(always_zero=sorted(zero), proposal=(
                f"{sorted(zero)} are zero at every checkpoint: if training held them fixed (the TransformerLens "
                f"grokking demo freezes every b_*), list them under [model] frozen in the spec and import again, "
                f"so that the learning coefficient does not sample directions the run never had"))
        run = writer.finish()
        if spec.model.kind == "transformer":
            _prove_bridge_load(run)
        shutil.move(str(tmp / "run"), str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Run.open(out)


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
    from claimlens.models import bridge_activations, build_bridge

    params = run.final()
    bridge = build_bridge(run.spec.model, run.spec.task.p, params)
    tokens = run.task.tokens
    ours = forward(params, tokens, run.spec.model).logits
    theirs = bridge_activations(bridge, tokens).logits
    err = ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()
    if err > 1e-4:
        raise CheckpointError(
            f"imported final checkpoint (epoch {run.epochs[-1]}, fingerprint {fingerprint(params)[:12]}) gives "
            f"different logits through TransformerLens than through claimlens (max relative error {err:.2e}); "
            f"the state dict layout was not understood"
        )

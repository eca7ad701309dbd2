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
from claimlens.runs.store import Run, RunWriter
from claimlens.tasks import ModularAddition, nanda_split

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
_BUFFER_SUFFIXES = (".mask", ".IGNORE")


# ----------------------------------------------------------------------------- safe reading


def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that say what is wrong with the file."""
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not re.search(r"global", str(exc), re.IGNORECASE):  # garbage, not a pickle asking for code
            raise CheckpointError(f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{_first_line(exc)}") from None
        detail = _unsafe_detail(str(exc))
        raise UnsafeCheckpointError(
            f"{str(path)!r}: refused to unpickle it: it needs Python objects other than tensors and plain "
            f"containers ({detail}). claimlens loads .pth files with torch.load(weights_only=True) so that a "
            f"checkpoint cannot run code. Re-save it holding only tensors, dicts, lists, numbers and strings "
            f"(for example the config as a plain dict)."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, IndexError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): {_first_line(exc)}"
        ) from None


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


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_tensors(path, what="state-dict file")
    obj = safe_torch_load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj)


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


def spec_from_source_config(config: Mapping[str, Any], name: str, *, where: str) -> RunSpec:
    """A RunSpec from a published config dict (Nanda's ``Config`` field names); unknown keys ignored."""
    tables: dict[str, dict[str, Any]] = {"task": {}, "model": {"kind": "transformer"}, "train": {}}
    for key, value in config.items():
        if key in _CONFIG_ALIASES:
            table, field = _CONFIG_ALIASES[key]
            if field == "act_fn" and isinstance(value, str):
                value = value.lower()
            if field == "lr" or field == "weight_decay" or field == "frac_train":
                value = float(value)
            tables[table][field] = value
    if "p" not in tables["task"]:
        raise SpecError(f"{where}: the config has no 'p'; pass --spec SPEC.toml describing the run")
    tables["train"].setdefault("checkpoint_every", 1)
    tables["train"].setdefault("epochs", max(tables["train"].get("checkpoint_every", 1), 1))
    return RunSpec.from_dict({"name": name, **tables}, source=f"{where} [config]")


# ----------------------------------------------------------------------------- the importers


def import_run(source: str | Path, out: str | Path, *, spec: RunSpec | None = None, name: str | None = None,
               checkpoint_every: int | None = None, progress: bool = True) -> Run:
    """Import ``source`` (a ``full_run_data.pth``-style file or a folder of state dicts) into ``out``."""
    source, out = Path(source), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {str(out)!r} already exists and is not empty; nothing was written")
    if not source.exists():
        raise CheckpointError(f"import source {str(source)!r} does not exist")
    name = name or (spec.name if spec else source.stem.replace("full_run_data", "imported") or "imported")
    if source.is_dir():
        epochs, state_dicts, spec, meta = _read_folder(source, spec, name)
    else:
        epochs, state_dicts, spec, meta = _read_full_run(source, spec, name, checkpoint_every)
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


def _read_full_run(path: Path, spec: RunSpec | None, name: str, checkpoint_every: int | None):
    data = safe_torch_load(path)
    where = str(path)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected a dict with 'state_dicts', 'epochs' and 'config'; got {type(data).__name__}")
    state_dicts = data.get("state_dicts", data.get("checkpoints"))
    if not isinstance(state_dicts, (list, tuple)) or not state_dicts:
        raise CheckpointError(f"{where}: no 'state_dicts' list (keys present: {sorted(map(str, data))})")
    for i, sd in enumerate(state_dicts):
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{where}: state_dicts[{i}] is not a mapping of names to tensors")
    epochs = data.get("epochs", data.get("checkpoint_epochs"))
    if epochs is None:
        if checkpoint_every is None:
            raise CheckpointError(
                f"{where}: no 'epochs' list saying which epoch each of the {len(state_dicts)} state dicts is; "
                f"claimlens never guesses epochs from list positions. If the checkpoints were saved every N "
                f"epochs starting at 0, say so with --checkpoint-every N"
            )
        epochs = [i * checkpoint_every for i in range(len(state_dicts))]
    epochs = _check_epochs(epochs, len(state_dicts), where)
    config = data.get("config")
    if spec is None:
        if not isinstance(config, Mapping):
            raise SpecError(f"{where}: no 'config' dict in the file; pass --spec SPEC.toml describing the run")
        spec = spec_from_source_config(config, name, where=where)
    meta: dict[str, Any] = {"format": "full_run_data", "file": path.name}
    split = _stored_split(data, spec, where)
    if split is not None:
        meta["split"] = split
    source_log = {k: data[k] for k in ("train_losses", "test_losses") if isinstance(data.get(k), (list, tuple))}
    if source_log:
        meta["source_log"] = source_log
    return epochs, list(state_dicts), spec, meta


def _stored_split(data: Mapping[str, Any], spec: RunSpec, where: str):
    tr, te = data.get("train_indices"), data.get("test_indices")
    if tr is None and te is None:
        return None
    try:
        tr_t, te_t = torch.as_tensor(tr, dtype=torch.int64).flatten(), torch.as_tensor(te, dtype=torch.int64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise CheckpointError(f"{where}: train_indices/test_indices must be lists of integers") from None
    return tr_t, te_t


def _read_folder(folder: Path, spec: RunSpec | None, name: str):
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
    if not files:
        raise CheckpointError(f"{str(folder)!r} holds no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
    if spec is None:
        for candidate in ("spec.toml", "run.toml"):
            if (folder / candidate).is_file():
                spec = RunSpec.from_toml(folder / candidate)
                spec = dataclasses.replace(spec, name=name)
                break
        else:
            raise SpecError(
                f"{str(folder)!r}: no spec.toml in the folder; pass --spec SPEC.toml describing the run "
                f"(task p and split, model shape)"
            )
    by_epoch: dict[int, Path] = {}
    for f in files:
        numbers = re.findall(r"\d+", f.stem)
        if not numbers:
            raise CheckpointError(
                f"{str(f)!r}: no epoch number in the file name; name checkpoint files like epoch_1200{f.suffix}"
            )
        epoch = int(numbers[-1])
        if epoch in by_epoch:
            raise CheckpointError(f"{str(folder)!r}: two files for epoch {epoch}: {by_epoch[epoch].name} and {f.name}")
        by_epoch[epoch] = f
    epochs = sorted(by_epoch)
    return epochs, [by_epoch[e] for e in epochs], spec, {"format": "state_dict_folder", "folder": folder.name}


def _write(out: Path, spec: RunSpec, epochs: list[int], state_dicts: Sequence[Any], meta: dict[str, Any],
           *, progress: bool) -> Run:
    p = spec.task.p
    if "split" in meta:
        train_idx, test_idx = meta.pop("split")
        split_rule = "stored"
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
        writer = RunWriter.create(tmp / "run", spec, task, {"kind": "imported", "split_rule": split_rule, **meta})
        notes: set[str] = set()
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
                sd = load_state_dict_file(sd)
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

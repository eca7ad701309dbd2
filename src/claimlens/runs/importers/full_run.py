"""The ``full_run_data.pth`` importer: a file holding a list of checkpoints with their epochs (Nanda/ARENA's
``full_run_data.pth``, the TransformerLens demo's save cell) or one model and its epoch; its config, logged
losses, split and optimizer state read as evidence (:mod:`claimlens.runs.evidence`), a Clock/Pizza sidecar checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens.config import RunSpec
from claimlens.errors import CheckpointError, SpecError
from claimlens.models import forward, validate_params
from claimlens.runs import evidence
from claimlens.runs.importers.safe_load import _EPOCH_LIST_KEYS, _WEIGHT_KEYS, _WEIGHT_LIST_KEYS
from claimlens.runs.importers.source_configs import (
    _CONFIG_ALIASES,
    is_transformer_lens_config,
    spec_from_source_config,
)
from claimlens.runs.importers.weights import (
    _describe_keys,
    is_state_dict,
    read_source,
    strip_wrapper_prefixes,
    unwrap_state_dict,
)
from claimlens.runs.layouts import (
    check_clock_pizza,
    clock_pizza_disagreement,
    clock_pizza_source_config,
    clock_pizza_split_unknown,
    convert_clock_pizza_mlp,
    find_sidecar,
    is_clock_pizza_config,
    to_property_format,
)
from claimlens.tasks import grid_labels, grid_tokens


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


def read_full_run(path: Path, spec: RunSpec | None, name: str, checkpoint_every: int | None,
                  final_epoch: int | None, ignore_logged: bool = False):
    notes: list[str] = []
    spec_given = spec is not None
    data = read_source(path, spec_given=spec_given, notes=notes)
    where = str(path)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected a dict holding the weights ('state_dicts' list, or 'model' / "
                              f"'model_state_dict' / 'state_dict'); got {type(data).__name__}")
    sidecar = find_sidecar(path)
    clock_pizza = sidecar is not None and is_clock_pizza_config(sidecar[1])
    cp_fields: dict = {}
    meta_unknown: str | None = None  # the reason the split is unknown, when it is
    epoch_source: str | None = None
    if clock_pizza:
        cp_fields, cp_notes = check_clock_pizza(sidecar[1], f"{where} (its {sidecar[0].name})")
        notes.extend(cp_notes)
        if spec_given:
            clock_pizza_disagreement(cp_fields, spec.model, f"{where} (its {sidecar[0].name})")
        if not any(data.get(k) is not None for k in ("train_indices", "test_indices", "train_data", "test_data")):
            meta_unknown = clock_pizza_split_unknown()
        if final_epoch is None and (final_epoch := _sidecar_epoch(sidecar[1], data, notes)) is not None:
            epoch_source = f"the sidecar config's 'epoch' ({sidecar[0].name})"
    state_dicts, epochs, meta = _weights_and_epochs(data, where, checkpoint_every, final_epoch, epoch_source)
    config = data.get("config")
    if clock_pizza and cp_fields.get("kind") == "mlp":  # its MLPs: converted here, where the sidecar is known
        p_source = spec.task.p if spec_given else sidecar[1].get("C")
        if isinstance(p_source, bool) or not isinstance(p_source, int) or p_source < 3:
            raise CheckpointError(f"{where} (its {sidecar[0].name}): C = {p_source!r}: expected the modulus, an "
                                  f"integer ≥ 3 (or pass --spec)")
        converted = [convert_clock_pizza_mlp(sd, sidecar[1], p_source, where) for sd in state_dicts]
        state_dicts = [params for params, _ in converted]
        notes.extend(converted[-1][1])
    if spec is None:
        if clock_pizza and not isinstance(config, Mapping):  # the Clock/Pizza code saves a bare state dict
            config = clock_pizza_source_config(sidecar[1], cp_fields)
            notes.append(f"the run's settings read from {sidecar[0].name} (C, frac, lr, weight_decay, epoch"
                         f"{', d_model, n_heads' if 'd_model' in config else ''})")
        if not isinstance(config, Mapping):
            raise SpecError(f"{where}: no 'config' dict in the file; pass --spec SPEC.toml describing the run")
        spec = spec_from_source_config(config, name, where=where, weights=state_dicts[-1], notes=notes,
                                       fields=cp_fields)
        if clock_pizza and "model_type" in sidecar[1]:  # code/train-linear.py: AdamW's default betas, no warm-up
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, betas=(0.9, 0.999),
                                                                       warmup_steps=0))
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
    elif meta_unknown is not None:
        if logged:
            notes.append("the file's logged losses were not verified: they are losses on a split that is unknown")
            logged = {}
        meta["split_unknown"] = meta_unknown
    elif spec_given or _nanda_config(config):
        meta["split_rule"] = ("nanda_shuffle, rebuilt from --spec's frac_train and split_seed" if spec_given else
                              "nanda_shuffle, rebuilt from the config's frac_train and seed")
        if "train_loss" in logged:  # the logged losses say whether the stated seed is the one that trained
            spec = _check_stated_seed(state_dicts, epochs, spec, logged, where, meta,
                                      "--spec" if spec_given else "the config")
    elif "train_loss" in logged:
        found = _search_split(state_dicts[-1], epochs[-1], spec, logged, config, where)
        meta["split"], meta["split_rule"] = (found.train_idx, found.test_idx), found.description
        spec = _frac_from_split(dataclasses.replace(spec, task=dataclasses.replace(
            spec.task, split_seed=found.seed if found.rule == "nanda_shuffle" else spec.task.split_seed)),
            found.train_idx, found.test_idx)
    else:
        meta["split_unknown"] = _unknown_split_reason(config)
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


def _per_example_loss(sd: Mapping[str, torch.Tensor], epoch: int, spec: RunSpec, where: str) -> torch.Tensor:
    """``[p²]`` float64 cross entropy of the checkpoint on every pair (row a·p + b)."""
    p = spec.task.p
    params, _ = to_property_format(strip_wrapper_prefixes(sd)[0], spec.model, p, where=where)
    validate_params(params, spec.model, p, where=f"{where} (epoch {epoch})")
    with torch.no_grad():
        logits = forward(params, grid_tokens(p), spec.model).logits.double()
    return torch.nn.functional.cross_entropy(logits, grid_labels(p), reduction="none")


SEED_CHECKPOINTS = 5  # checkpoints, evenly spaced over the run, at which a stated split seed is checked


def _check_stated_seed(state_dicts, epochs: list[int], spec: RunSpec, logged, where: str,
                       meta: dict[str, Any], stated_by: str) -> RunSpec:
    """The split rebuilt from the stated ``split_seed`` must reproduce the logged losses at up to
    :data:`SEED_CHECKPOINTS` checkpoints spread over the run (memorisation tells splits apart, a generalised model
    does not);
    when it does not, Nanda's shuffle at the same ``frac_train`` with seeds 0–99 is searched
    (:func:`claimlens.runs.evidence.search_seed`): one seed that reproduces them is taken and the search recorded
    in run.json (``split_search``); none or several: :class:`CheckpointError` listing what was tried."""
    n = len(epochs)
    picks = evidence.spread(n, SEED_CHECKPOINTS)
    per_example = {epochs[i]: _per_example_loss(state_dicts[i], epochs[i], spec, where) for i in picks}
    found = evidence.search_seed(per_example, spec.task.p, spec.task.frac_train, spec.task.split_seed, logged, where,
                                 stated_by=stated_by)
    if found is None:
        return spec
    meta["split_search"] = found
    meta["split_rule"] = (f"nanda_shuffle with seed {found['found_seed']} (found by search: {stated_by}'s seed "
                          f"{found['stated_seed']} does not reproduce the logged losses)")
    meta.setdefault("notes", []).append(
        f"split seed {found['found_seed']} found by search: {stated_by}'s split_seed {found['stated_seed']} does not "
        f"reproduce the file's logged losses at epochs {found['epochs']}; of seeds {found['tried']} only "
        f"{found['found_seed']} does")
    return dataclasses.replace(spec, task=dataclasses.replace(spec.task, split_seed=found["found_seed"]))


def _search_split(sd: Mapping[str, torch.Tensor], epoch: int, spec: RunSpec, logged, config: Any, where: str):
    p = spec.task.p
    per_example = _per_example_loss(sd, epoch, spec, where)
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
                        final_epoch: int | None, epoch_source: str | None = None):
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
            f"{where}: a single model ({f'under {container!r}' if container else 'a bare state dict'}) and no "
            f"'epoch' saying when it was saved; claimlens "
            f"never guesses epochs. Pass --final-epoch N (the number of optimiser steps behind it)")
    meta: dict[str, Any] = {"format": "single_checkpoint", "container": container, "epoch_source":
                            epoch_source or ("--final-epoch" if final_epoch is not None else "the file's 'epoch'")}
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


def _unknown_split_reason(config: Any) -> str:
    """Why a file's split is unknown: it stores none, logs no train loss to find it by, and its config gives no
    rule that rebuilds it."""
    tl = isinstance(config, Mapping) and is_transformer_lens_config(config)
    return ("the file stores no split (no train_indices/test_indices, no train_data/test_data), logs no train loss "
            "to find it by, and " + ("its TransformerLens config's seed is the model-init seed (the TransformerLens "
                                     "demo splits with torch.randperm)" if tl else
                                     "no config gives Nanda's split (frac_train and a split seed)")
            + "; to judge train/test claims, store the split in the file or import with --spec SPEC.toml whose "
              "[task] frac_train/split_seed give Nanda's shuffle")

"""The folder importer: a folder of checkpoint files (or of torch.distributed.checkpoint directories) with a
``spec.toml``, the epoch of each read from the file (``epoch``) or from its name (:func:`epoch_from_name`: ``epoch_12``, ``epoch=3-step=400``, a single number, or
``--epoch-pattern``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from claimlens.config import RunSpec
from claimlens.errors import CheckpointError, SpecError
from claimlens.runs.importers.distributed import is_dcp_checkpoint
from claimlens.runs.importers.weights import (
    CHECKPOINT_SUFFIXES,
    read_checkpoint_file,
)
from claimlens.runs.layouts import (
    check_clock_pizza,
    clock_pizza_split_unknown,
    find_sidecar,
    is_clock_pizza_config,
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


def read_folder(folder: Path, spec: RunSpec | None, name: str, epoch_pattern: str | None = None):
    files = sorted(f for f in folder.iterdir()
                   if (f.is_file() and f.suffix in CHECKPOINT_SUFFIXES) or is_dcp_checkpoint(f))
    if not files:
        raise CheckpointError(f"{str(folder)!r} holds no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) and no "
                              f"torch.distributed.checkpoint directories (with a .metadata file)")
    for f in files:
        sidecar = find_sidecar(f)
        if sidecar is not None and is_clock_pizza_config(sidecar[1]):
            check_clock_pizza(sidecar[1], f"{str(f)!r} ({sidecar[0].name})")  # refuses what cannot be represented
            raise CheckpointError(
                f"{str(f)!r} ({sidecar[0].name}): a Clock/Pizza checkpoint is the model at the end of one run, with "
                f"its own config: import each file on its own (`claimlens import {f.name} --out RUN`; its split is "
                f"unknown: {clock_pizza_split_unknown()})")
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
    disagree = {f.name: {"stored": found[f][0], "name": epoch_from_name(_stem(f), epoch_pattern)} for f in files
                if found[f][1].startswith("stored") and epoch_from_name(_stem(f), epoch_pattern) not in (None, found[f][0])}
    if disagree:
        meta["epoch_name_disagrees"] = disagree  # the stored epoch is kept; the name may count steps or runs
    return [found[f][0] for f in order], order, spec, meta


def _file_epoch(path: Path, pattern: str | None) -> tuple[int | None, str]:
    """The epoch of one checkpoint file and where it came from: the file's own ``epoch`` key first."""
    named = epoch_from_name(_stem(path), pattern)
    if path.suffix != ".safetensors":
        stored = read_checkpoint_file(path)[1].get("epoch")
        if stored is not None:
            return stored, "stored in the file ('epoch')"
    return named, "--epoch-pattern" if pattern else "file name"


def _stem(path: Path) -> str:
    """A checkpoint file's name without its suffix; a DCP directory's whole name."""
    return path.name if path.is_dir() else path.stem

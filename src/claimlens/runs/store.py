"""The on-disk run directory: a manifest, safetensors checkpoints, a training log.

Layout::

    RUN/
      run.json                           manifest (schema version, spec, split, checkpoints, hashes)
      checkpoints/epoch_0001000.safetensors   property-format parameters after 1000 optimiser steps
      log.jsonl                          one line per epoch: epoch, train/test loss and accuracy
      resume.safetensors                 parameters + optimiser state of the last checkpoint,
                                         only while training (removed when the run is complete)

The manifest is the commit point. Files are written to a temporary name and renamed, so a run
killed at any instant holds only whole files, and every checkpoint the manifest lists exists with
the sha256 it records. Epochs are data (listed in the manifest), never inferred from positions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from claimlens import __version__
from claimlens._io import atomic_write_bytes, atomic_write_json, load_tensors, save_tensors, sha256_file
from claimlens.config import RunSpec, canonical_json
from claimlens.errors import CheckpointError, RunError, SpecError
from claimlens.models import param_shapes, validate_params
from claimlens.runs.manifest import MANIFEST, SCHEMA_VERSION, read_manifest
from claimlens.tasks import ModularAddition, RepeatedSubsequence, task_of

LOG = "log.jsonl"
RESUME = "resume.safetensors"
LOG_FIELDS = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
ALL_PAIRS_LOG_FIELDS = ("all_loss", "all_acc")  # the log of a run whose split is unknown
_VERIFIED: set[tuple] = set()  # (checkpoint file, size, mtime, sha256) checked in this process


# ----------------------------------------------------------------------------- reading a run


@dataclass(frozen=True)
class CheckpointEntry:
    epoch: int
    file: str
    sha256: str


class Run:
    """A run directory opened for reading. Loading is lazy: nothing but the manifest is read here.

    >>> run = Run.open("path/to/run")            # doctest: +SKIP
    >>> run.epochs[:3], run.spec.task.p           # doctest: +SKIP
    >>> W_E = run.stacked("embed.W_E")            # [n_checkpoints, d_vocab, d_model]  # doctest: +SKIP
    """

    has_weights = True  # checkpoints to analyse (a curves-only run, claimlens.reference.CurvesRun: False)

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self.spec = RunSpec.from_dict(manifest["spec"], source=f"{path / MANIFEST} [spec]", stored=True)
        self.checkpoints = [CheckpointEntry(c["epoch"], c["file"], c["sha256"]) for c in manifest["checkpoints"]]
        self.task = task_of(self.spec.task, manifest["split"])
        self._name: str | None = None  # set by named()
        self._stamp_cache: dict | None = None  # the verified/ stamps of this run's files, read on first use
        self._stamps_changed = False

    # -- opening

    @classmethod
    def open(cls, path: str | Path, *, require_complete: bool = True) -> Run:
        path = Path(path)
        manifest = read_manifest(path)
        manifest_path = path / MANIFEST
        try:
            run = cls(path, manifest)
        except SpecError as exc:
            raise RunError(str(exc)) from None
        if require_complete and manifest["status"] != "complete":
            raise RunError(
                f"run {str(path)!r} is still being written (status {manifest['status']!r}, "
                f"{len(run.checkpoints)} checkpoints so far); resume it with `claimlens train` or wait"
            )
        if not run.checkpoints and require_complete:
            raise RunError(f"run {str(path)!r} has no checkpoints")
        try:
            run.task.check()
        except ValueError as exc:
            raise RunError(f"{str(manifest_path)!r}: {exc}") from None
        for entry in run.checkpoints:
            if not (path / entry.file).is_file():
                raise RunError(f"checkpoint for epoch {entry.epoch} listed in {MANIFEST} is missing: {entry.file}")
        return run

    # -- identity

    @property
    def name(self) -> str:
        """The run's name: its manifest's, or the spec's it was opened for (:meth:`named`)."""
        return self._name or self.manifest["name"]

    def named(self, name: str) -> Run:
        """This run, called ``name`` in messages and ids: a cached run trained under another spec name with the
        same weights-determining fields (a sweep member identical to a built-in run) is opened under the name of
        the spec asked for. Nothing on disk changes."""
        self._name = name
        self.spec = dataclasses.replace(self.spec, name=name)
        return self

    @property
    def epochs(self) -> list[int]:
        return [c.epoch for c in self.checkpoints]

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def analysis_key(self) -> str:
        """The key analyses of this run are cached under: the content hash of the run as its manifest now
        describes it (spec, split, checkpoint hashes). It is the recorded ``content_hash`` unless ``run.json`` was
        edited since the run was written (a corrected spec, another split): then the analyses of the run as
        written are not reused for the edited one."""
        computed = content_hash(self.spec.hash, self.manifest["split"], self.manifest["checkpoints"])
        return self.content_hash if computed == self.content_hash else computed

    def verify_files(self) -> None:
        """Check that every checkpoint file is the one the manifest's sha256 names (the content hash, and so every
        cached analysis of the run, stands for those bytes). Raises :class:`CheckpointError` naming the first
        file that is missing, unreadable or changed since the run was written (truncated, corrupted, replaced).

        A file is hashed once per machine: its size, modification time and sha256 are then stamped in the cache
        directory (``verified/``), and a later check only compares the stamp with the file's ``stat`` (as git
        does for its index). :meth:`checkpoint` and :meth:`stacked` check the files they read the same way."""
        for entry in self.checkpoints:
            self._check_file(entry, save=False)
        self._save_stamps()

    def _check_file(self, entry: CheckpointEntry, *, save: bool = True, rehash: bool = False) -> None:
        file = self.path / entry.file
        where = f"run {self.name!r}, epoch {entry.epoch} ({entry.file})"
        try:
            st = file.stat()
        except OSError:
            raise CheckpointError(f"{where}: the checkpoint is missing; copy the run again, or train or import it "
                                  f"again") from None
        stamp = [st.st_size, st.st_mtime_ns, entry.sha256]
        key = (str(file.resolve()), *stamp)
        if not rehash and key in _VERIFIED:
            return
        stamps = self._stamps()
        if rehash or stamps.get(entry.file) != stamp:
            if sha256_file(file) != entry.sha256:
                # unreadable (truncated, a pickle) or wrong (NaN, shapes): its own, more telling message first
                validate_params(load_tensors(file, what=where), self.spec.model, self.spec.modulus, where=where)
                raise CheckpointError(
                    f"{where}: the file's content does not match the sha256 recorded in {MANIFEST}: it was replaced "
                    f"or modified after the run was written. Copy the run again, or train or import it again; no "
                    f"claim is judged on it, and no analysis cached for the run is used")
            stamps[entry.file] = stamp
            self._stamps_changed = True
            if save:
                self._save_stamps()
        _VERIFIED.add(key)

    def _stamps(self) -> dict:
        if self._stamp_cache is None:
            try:
                loaded = json.loads(self._stamp_path().read_text())
            except (OSError, ValueError):
                loaded = {}
            self._stamp_cache = loaded if isinstance(loaded, dict) else {}
        return self._stamp_cache

    def _stamp_path(self) -> Path:
        from claimlens._io import cache_dir

        where = str(self.path.resolve())
        return cache_dir() / "verified" / f"{hashlib.sha256(where.encode()).hexdigest()[:24]}.json"

    def _save_stamps(self) -> None:
        if self._stamps_changed:
            try:
                atomic_write_json(self._stamp_path(), self._stamp_cache)
            except OSError:
                pass  # a read-only cache: the files are hashed again next session
            self._stamps_changed = False

    @property
    def id(self) -> str:
        """Short identifier used in test ids: ``<name>-<first 8 of content hash>``."""
        return f"{self.name}-{self.content_hash[:8]}"

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, name={self.name!r}, checkpoints={len(self.checkpoints)})"

    # -- checkpoints

    def _entry(self, epoch: int) -> CheckpointEntry:
        for entry in self.checkpoints:
            if entry.epoch == epoch:
                return entry
        raise KeyError(f"run {self.name!r} has no checkpoint at epoch {epoch}; it has {self.epochs[:5]}…{self.epochs[-3:]}")

    def checkpoint(self, epoch: int, *, verify_hash: bool = False) -> dict[str, torch.Tensor]:
        """All parameters at ``epoch`` (validated: names, shapes, finite values). The file is checked against the
        manifest's sha256 first (see :meth:`verify_files`; ``verify_hash``: hashed even when its stamp fits)."""
        entry = self._entry(epoch)
        file = self.path / entry.file
        where = f"run {self.name!r}, epoch {epoch} ({entry.file})"
        self._check_file(entry, rehash=verify_hash)
        params = load_tensors(file, what=where)
        validate_params(params, self.spec.model, self.spec.modulus, where=where)
        return params

    def final(self) -> dict[str, torch.Tensor]:
        return self.checkpoint(self.epochs[-1])

    def stacked(self, name: str, epochs: Sequence[int] | None = None) -> torch.Tensor:
        """One parameter at many checkpoints as a single tensor ``[n_checkpoints, *shape]``.

        Only that tensor is read from each file (safetensors is memory-mapped).
        """
        from safetensors import SafetensorError, safe_open

        shapes = param_shapes(self.spec.model, self.spec.modulus)
        if name not in shapes:
            raise KeyError(f"{name!r} is not a parameter of this {self.spec.model.kind}; known: {sorted(shapes)}")
        epochs = self.epochs if epochs is None else list(epochs)
        out = torch.empty((len(epochs), *shapes[name]))
        for i, epoch in enumerate(epochs):
            entry = self._entry(epoch)
            where = f"run {self.name!r}, epoch {epoch} ({entry.file})"
            self._check_file(entry, save=False)
            try:
                with safe_open(self.path / entry.file, framework="pt") as fh:
                    tensor = fh.get_tensor(name)
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{where}: cannot read {name} ({exc})") from None
            if tuple(tensor.shape) != shapes[name]:
                raise CheckpointError(f"{where}: {name} has shape {list(tensor.shape)}, expected {list(shapes[name])}")
            if not torch.isfinite(tensor).all():
                raise CheckpointError(f"{where}: {name} holds non-finite values")
            out[i] = tensor
        self._save_stamps()
        return out

    # -- training log

    def log(self) -> dict[str, torch.Tensor]:
        """Per-epoch training log as columns (``epoch`` int64, the rest float64); empty if none. A run whose split
        is unknown logs ``all_loss`` / ``all_acc`` (on all pairs) instead of the train and test columns."""
        rows = read_log(self.path / LOG)
        fields = LOG_FIELDS if self.task.split_known else ("epoch", *ALL_PAIRS_LOG_FIELDS)
        return {k: torch.tensor([r[k] for r in rows], dtype=torch.int64 if k == "epoch" else torch.float64)
                for k in fields}


def read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunError(f"{str(path)!r} line {n} is not valid JSON: {line[:80]!r}") from None
    return rows


# ----------------------------------------------------------------------------- writing a run


def content_hash(spec_hash: str, split: dict[str, Any], checkpoints: Iterable[dict[str, Any]]) -> str:
    payload = {"spec": spec_hash, "split": hashlib.sha256(canonical_json(split).encode()).hexdigest(),
               "checkpoints": [[c["epoch"], c["sha256"]] for c in checkpoints]}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class RunWriter:
    """Creates or continues a run directory. Used by the trainer and the importers."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest

    @classmethod
    def create(cls, path: str | Path, spec: RunSpec, task: ModularAddition | RepeatedSubsequence,
               source: dict[str, Any]) -> RunWriter:
        path = Path(path)
        if (path / MANIFEST).exists():
            raise RunError(f"{str(path)!r} already holds a run; refusing to overwrite it")
        if path.exists() and any(path.iterdir()):
            raise RunError(f"{str(path)!r} exists and is not empty; choose a new directory")
        task.check()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "claimlens_version": __version__,
            "name": spec.name,
            "spec": spec.to_dict(),
            "spec_hash": spec.hash,
            "source": source,
            "split": {"rule": "nanda_shuffle" if source.get("kind") == "trained" else source.get("split_rule", "stored"),
                      **task.split_record()},
            "params": {k: list(v) for k, v in param_shapes(spec.model, spec.modulus).items()},
            "checkpoints": [],
            "log": LOG,
            "status": "training",
            "content_hash": "",
        }
        writer = cls(path, manifest)
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        writer._commit()
        return writer

    @classmethod
    def reopen(cls, path: str | Path) -> RunWriter:
        path = Path(path)
        run = Run.open(path, require_complete=False)  # validates
        return cls(path, run.manifest)

    @property
    def epochs(self) -> list[int]:
        return [c["epoch"] for c in self.manifest["checkpoints"]]

    def add_checkpoint(self, epoch: int, params: dict[str, torch.Tensor]) -> None:
        """Write a checkpoint and commit it to the manifest.

        Re-adding an epoch that is already committed (after a resume) must reproduce it bit for bit.
        """
        rel = f"checkpoints/epoch_{epoch:07d}.safetensors"
        existing = [c for c in self.manifest["checkpoints"] if c["epoch"] == epoch]
        if existing:
            from safetensors.torch import save

            sha = hashlib.sha256(save({k: v.detach().cpu().contiguous() for k, v in params.items()},
                                      metadata={"epoch": str(epoch)})).hexdigest()
            if sha != existing[0]["sha256"]:
                raise RunError(
                    f"resumed training reproduced epoch {epoch} with different weights than the stored "
                    f"checkpoint ({sha[:12]} vs {existing[0]['sha256'][:12]}); training is not deterministic here"
                )
            return
        if self.epochs and epoch <= self.epochs[-1]:
            raise RunError(f"checkpoint epochs must increase: {epoch} after {self.epochs[-1]}")
        sha = save_tensors(self.path / rel, params, metadata={"epoch": str(epoch)})
        self.manifest["checkpoints"].append({"epoch": epoch, "file": rel, "sha256": sha})
        self._commit()

    def append_log(self, rows: list[dict[str, float]]) -> None:
        if not rows:
            return
        with open(self.path / LOG, "a") as fh:
            fh.writelines(json.dumps(row, allow_nan=True) + "\n" for row in rows)
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_log(self, before_epoch: int) -> None:
        """Keep only log rows with ``epoch < before_epoch`` (used when resuming)."""
        rows = [r for r in read_log(self.path / LOG) if r["epoch"] < before_epoch]
        atomic_write_bytes(self.path / LOG, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def set_source(self, **fields: Any) -> None:
        self.manifest["source"].update(fields)
        self._commit()

    def finish(self) -> Run:
        self.manifest["status"] = "complete"
        self._commit()
        (self.path / RESUME).unlink(missing_ok=True)
        return Run.open(self.path)

    def _commit(self) -> None:
        m = self.manifest
        m["content_hash"] = content_hash(m["spec_hash"], m["split"], m["checkpoints"])
        atomic_write_json(self.path / MANIFEST, m)

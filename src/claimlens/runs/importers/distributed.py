"""Checkpoints of sharded training, read in one process without a process group:

* ``torch.save`` of an FSDP2 state dict, whose values are DTensors (``fully_shard(model).state_dict()``): the file is
  read weights-only, with the DTensor classes torch itself marks safe for that (importing
  ``torch.distributed.tensor`` registers them); a DTensor whose local tensor is the whole tensor (a mesh of one rank,
  or replicated) becomes that tensor. A shard of a larger mesh is refused: the file holds one rank's part only;
* ``torch.distributed.checkpoint`` (DCP) directories (``.metadata`` + ``__R_0.distcp``): the shards of every rank
  are put together by torch's own loader (``dcp.load``), without a process group. Its ``.metadata`` file is a plain
  pickle, which torch unpickles with ``pickle.load``; claimlens reads it with an unpickler that allows only DCP's
  metadata classes (and torch's tensor metadata), so that a checkpoint cannot run code; the tensors are read by
  ``torch.load(weights_only=True)`` as torch reads them.

What cannot be read this way is refused in one line that names the format and the one-line conversion.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens.errors import CheckpointError

DCP_METADATA = ".metadata"
DCP_TO_TORCH = ("python -m torch.distributed.checkpoint.format_utils dcp_to_torch {src} {dst} (it unpickles "
                "the .metadata file: only for a checkpoint you trust)")


def is_dcp_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch.distributed.checkpoint directory (it holds ``.metadata``)."""
    return path.is_dir() and (path / DCP_METADATA).is_file()


def needs_dtensor(exc: BaseException) -> bool:
    """Whether torch's weights-only unpickler refused a file because it holds DTensors."""
    return "DTensor" in str(exc) or "torch.distributed.tensor" in str(exc) or "DeviceMesh" in str(exc)


def dtensor_classes_registered() -> bool:
    """Import ``torch.distributed.tensor``, which registers the DTensor classes as safe for weights-only loading;
    False when this torch build has no ``torch.distributed``."""
    if not torch.distributed.is_available():
        return False
    importlib.import_module("torch.distributed.tensor")
    return True


@contextlib.contextmanager
def quiet_device_mesh() -> Iterator[None]:
    """Unpickling a DeviceMesh before any process group exists logs a warning meant for torch.compile users."""
    logger = logging.getLogger("torch.distributed.device_mesh")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def is_dtensor(obj: Any) -> bool:
    return isinstance(obj, torch.Tensor) and type(obj).__name__ == "DTensor" \
        and type(obj).__module__.startswith("torch.distributed")


def gather_dtensors(obj: Any, path: Path, notes: list[str] | None = None, where: str = "") -> Any:
    """``obj`` with every DTensor replaced by its full tensor, when its local tensor is the whole tensor (a mesh of
    one rank, or a replicated placement). Raises :class:`CheckpointError` for a shard of a larger mesh."""
    found: list[str] = []

    def walk(value: Any, key: str) -> Any:
        if is_dtensor(value):
            found.append(key)
            return _local_whole(value, path, key)
        if isinstance(value, Mapping):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return tuple(walk(v, f"{key}[{i}]") for i, v in enumerate(value))
        return value

    out = walk(obj, where)
    if found and notes is not None:
        notes.append(f"read {len(found)} DTensors (an FSDP2 / DTensor state dict saved with torch.save, a mesh of "
                     f"one rank) as full tensors")
    return out


def _local_whole(value: Any, path: Path, key: str) -> torch.Tensor:
    local = value._local_tensor
    mesh_size = value.device_mesh.size()
    replicated = all(type(p).__name__ == "Replicate" for p in value.placements)
    if tuple(local.shape) == tuple(value.shape) and (mesh_size == 1 or replicated):
        return local.detach().clone()
    raise CheckpointError(
        f"{str(path)!r}: {key} is one rank's shard of a DTensor ({list(value.placements)} over {mesh_size} ranks, "
        f"local {list(local.shape)} of {list(value.shape)}): the file does not hold the whole model. Save the full "
        f"state dict instead: torch.save({{k: v.full_tensor() for k, v in model.state_dict().items()}}, path) on "
        f"every rank (rank 0 writing), or dcp.save(model.state_dict(), checkpoint_id=DIR), which claimlens reads")


# ----------------------------------------------------------------------------- torch.distributed.checkpoint

_DCP_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                                              "ChunkStorageMetadata", "TensorProperties", "MetadataIndex",
                                              "StorageMeta", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a DCP ``.metadata`` file allowing only DCP's metadata classes, ``torch.Size``, torch dtypes and
    layouts, paths and ``OrderedDict``: nothing in the file can run code."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _DCP_METADATA_CLASSES.get(module, ()):
            return getattr(importlib.import_module(module), name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format,
                                                                          torch.layout)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _reader_and_planner(path: Path):
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class SafeMetadataReader(FileSystemReader):
        """torch's reader, but the .metadata pickle read by :class:`_MetadataUnpickler` (torch uses pickle.load)."""

        def read_metadata(self, *args: Any, **kwargs: Any):
            with open(Path(self.path) / DCP_METADATA, "rb") as fh:
                metadata = _MetadataUnpickler(fh).load()
            if hasattr(metadata, "storage_meta") and hasattr(self, "load_id"):  # as torch's own reader does
                from torch.distributed.checkpoint.metadata import StorageMeta

                if metadata.storage_meta is None:
                    metadata.storage_meta = StorageMeta()
                metadata.storage_meta.load_id = self.load_id
            return metadata

    class WeightsOnlyPlanner(DefaultLoadPlanner):
        """Non-tensor items (an ``epoch``) read weights-only; one that needs more is dropped."""

        def load_bytes(self, read_item, value: io.BytesIO) -> None:
            try:
                loaded = torch.load(value, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - an object claimlens does not unpickle: not needed for the weights
                loaded = _DROPPED
            self.state_dict[read_item.dest_index.fqn] = loaded

    return SafeMetadataReader(str(path)), WeightsOnlyPlanner(flatten_state_dict=False, flatten_sharded_tensors=False)


_DROPPED = object()


def read_dcp(path: Path, notes: list[str] | None = None) -> dict[str, Any]:
    """The state dict a DCP directory holds, every rank's shards put together in this process (no process group),
    nested as it was saved (``{"model": {...}, "epoch": 3}``). Raises :class:`CheckpointError` in one line naming
    the format and the conversion when it cannot be read so."""
    conversion = DCP_TO_TORCH.format(src=path, dst=f"{path.name}.pt")
    if not torch.distributed.is_available():
        raise CheckpointError(f"{str(path)!r} is a torch.distributed.checkpoint (DCP) directory and this torch build "
                              f"has no torch.distributed; convert it where it has: {conversion}")
    from torch.distributed.checkpoint import load
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    reader, planner = _reader_and_planner(path)
    try:
        metadata = reader.read_metadata()
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{str(path)!r}: the .metadata of this torch.distributed.checkpoint (DCP) directory "
                              f"asks for {exc}, which claimlens does not unpickle (it could run code); if you trust "
                              f"it, convert it: {conversion}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged metadata file
        raise CheckpointError(f"{str(path)!r}: the .metadata of this torch.distributed.checkpoint (DCP) directory is "
                              f"not readable ({type(exc).__name__}: {str(exc)[:160]}); copy it again") from None
    state: dict[str, Any] = {}
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            state[fqn] = torch.empty(md.size, dtype=md.properties.dtype)
        elif isinstance(md, BytesStorageMetadata):
            state[fqn] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process": it is
            load(state, storage_reader=reader, planner=planner)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - missing or truncated .distcp files, an unknown transform
        raise CheckpointError(f"{str(path)!r}: this torch.distributed.checkpoint (DCP) directory could not be read "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); check "
                              f"that every __R_0.distcp file is there, or convert it: {conversion}") from None
    state = {k: v for k, v in state.items() if v is not _DROPPED and v is not None}
    mapping = getattr(metadata, "planner_data", None)  # flattened key -> the path it was saved under
    mapping = mapping if isinstance(mapping, Mapping) else {}
    nested: dict[str, Any] = {}
    for fqn, value in state.items():
        keys = mapping.get(fqn)
        keys = tuple(str(k) for k in keys) if isinstance(keys, (tuple, list)) and keys else (fqn,)
        target = nested
        for key in keys[:-1]:
            nxt = target.setdefault(key, {})
            if not isinstance(nxt, dict):
                target, keys = nested, (fqn,)
                break
            target = nxt
        target[keys[-1]] = value
    if notes is not None:
        n = sum(isinstance(v, torch.Tensor) for v in state.values())
        ranks = len({getattr(info, "relative_path", None) for info in (reader.storage_data or {}).values()})
        notes.append(f"read a torch.distributed.checkpoint (DCP) directory: {n} tensors put together from "
                     f"{ranks} .distcp file{'s' if ranks != 1 else ''} in one process")
    return nested

"""Finding the weights in a checkpoint: the state dict at the top level or under ``model`` /
``model_state_dict`` / ``state_dict``, the wrapper prefixes of torch.compile (``_orig_mod.``), DataParallel / DDP
(``module.``) and a LightningModule's attribute (``model.``) stripped when every key carries one, in every format,
and one checkpoint read (safetensors, a weights-only ``.pth`` / ``.pt`` / ``.ckpt`` through
:func:`~claimlens.runs.importers.safe_load.safe_torch_load`, or a torch.distributed.checkpoint directory through
:mod:`~claimlens.runs.importers.distributed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens._io import load_tensors
from claimlens.errors import CheckpointError
from claimlens.runs.importers.distributed import is_dcp_checkpoint, read_dcp
from claimlens.runs.importers.safe_load import _WEIGHT_KEYS, safe_torch_load

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


# torch.compile, DataParallel / DDP, a LightningModule holding the network as ``self.model``
_WRAPPER_PREFIXES = ("_orig_mod.", "module.", "model.")


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
    """Remove ``_orig_mod.`` (torch.compile) / ``module.`` (DataParallel, DDP) / ``model.`` (a LightningModule's
    ``self.model``) when *every* key carries it, repeatedly (``module._orig_mod.``); returns the prefixes removed."""
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


def read_source(path: Path, *, spec_given: bool = False, notes: list[str] | None = None) -> Any:
    """What a checkpoint holds, read safely, whatever its format: a ``torch.save`` file (weights-only, DTensors
    gathered), a safetensors file (its tensors), or a torch.distributed.checkpoint directory (nested as it was
    saved)."""
    if is_dcp_checkpoint(path):
        return read_dcp(path, notes)
    if path.suffix == ".safetensors":
        return load_tensors(path, what="checkpoint", advice="Copy or download it again, or re-save it with "
                                                             "safetensors.torch.save_file")
    return safe_torch_load(path, spec_given=spec_given, notes=notes)


def read_checkpoint_file(path: Path, *, spec_given: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One checkpoint (a file, or a DCP directory): its state dict (unwrapped, prefixes stripped) and what was
    found (``container``, ``prefixes``, the ``epoch`` it stores if any, ``notes`` of what was converted)."""
    notes: list[str] = []
    obj = read_source(path, spec_given=spec_given, notes=notes)
    sd, container = unwrap_state_dict(obj, where=repr(str(path)))
    sd, prefixes = strip_wrapper_prefixes(sd)
    info: dict[str, Any] = {"container": container, "prefixes": prefixes, "notes": notes}
    epoch = obj.get("epoch") if isinstance(obj, Mapping) and container else None
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        info["epoch"] = epoch
    return sd, info


def stored_dtypes(sd: Mapping[str, torch.Tensor]) -> set[str]:
    """The dtypes (``float32``, ``bfloat16``, …) of the floating-point tensors of a state dict, as stored."""
    return {str(v.dtype).removeprefix("torch.") for v in sd.values() if v.is_floating_point()}


def dtype_label(dtypes: set[str]) -> str:
    """One label for the dtypes of a run's checkpoints: ``bfloat16``, or ``bfloat16, float32`` when mixed."""
    return ", ".join(sorted(dtypes)) if dtypes else "none"

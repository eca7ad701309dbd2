"""Finding the weights in a checkpoint file: the state dict at the top level or under ``model`` /
``model_state_dict`` / ``state_dict``, the wrapper prefixes of torch.compile and DataParallel stripped, and one
checkpoint file read (safetensors or a weights-only ``.pth``, :func:`~claimlens.runs.importers.safe_load.safe_torch_load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from claimlens._io import load_tensors
from claimlens.errors import CheckpointError
from claimlens.runs.importers.safe_load import _WEIGHT_KEYS, safe_torch_load

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


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

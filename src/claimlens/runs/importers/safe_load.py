"""Reading ``.pth`` files safely: ``torch.load(weights_only=True, map_location="cpu")`` plus a narrow allowlist.

Allowed on top of torch's own weights-only set (tensors, plain containers, numbers, strings, ``torch.dtype``):

* numeric numpy: scalars (``numpy._core.multiarray.scalar`` and its numpy-1 name) and arrays
  (``numpy._core.multiarray._reconstruct`` + ``numpy.ndarray``) whose dtype is bool, integer, float or complex.
  Object / string / void dtypes are refused while unpickling (they are built through a checked ``numpy.dtype``);
* inert stand-ins for config classes that only hold fields: TransformerLens's ``HookedTransformerConfig`` (the
  TL grokking demo saves ``model.cfg`` itself). The stand-in keeps the pickled attributes and is read as a dict.

After loading, numpy values become Python numbers (scalars) or tensors (arrays) and stand-ins become dicts,
so the importers only ever see tensors, containers, numbers and strings.

When a file needs anything else, :func:`unsafe_globals` lists every global it asks for together with the key
holding it, read by an unpickler whose every global is a placeholder (nothing from the file runs).

:func:`safe_torch_load` is how the importers read a file: weights-only through :func:`load`, with errors that say
what is wrong with the file (missing, a text file or Git LFS pointer, truncated or corrupt), and a file asking for
other globals refused with every one listed, or, where they all sit in keys an import does not need and a spec
describes the run, read with inert placeholders there. A file of DTensors (FSDP2) is read with the DTensor classes
torch itself allows once ``torch.distributed.tensor`` is imported (:mod:`claimlens.runs.importers.distributed`).
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from claimlens.errors import CheckpointError, UnsafeCheckpointError
from claimlens.runs.importers.distributed import (
    dtensor_classes_registered,
    gather_dtensors,
    needs_dtensor,
    quiet_device_mesh,
)
from claimlens.runs.layouts import first_line

# TransformerLens config classes, by the module paths TL 1-3 pickled them under.
_TL_CONFIG_NAMES = (
    "transformer_lens.HookedTransformerConfig.HookedTransformerConfig",
    "transformer_lens.config.HookedTransformerConfig.HookedTransformerConfig",
)
_NUMERIC_KINDS = "biufc"


class InertConfig:
    """Stand-in for a pickled config object: keeps the attributes it was built with, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


def _numeric_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {dtype!r} is not numeric (only bool/int/float/complex allowed)")
    return dtype


def _numeric_scalar(dtype: np.dtype, *args: Any) -> Any:
    _numeric_dtype(dtype)
    from numpy._core.multiarray import scalar

    return scalar(dtype, *args)


def _ndarray_reconstruct(subtype: Any, *args: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"only plain numpy.ndarray is allowed, not {subtype!r}")
    from numpy._core.multiarray import _reconstruct

    return _reconstruct(np.ndarray, *args)


def _numeric_dtype_classes() -> list[tuple[type, str]]:
    codes = np.typecodes["AllInteger"] + np.typecodes["AllFloat"] + "?"
    classes = {type(np.dtype(c)) for c in codes}
    return [(cls, f"{cls.__module__}.{cls.__qualname__}") for cls in classes]


def allowlist() -> list[tuple[Any, str]]:
    """The extra (callable, pickled name) pairs :func:`load` allows."""
    pairs: list[tuple[Any, str]] = [(_numeric_dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        pairs += [(_numeric_scalar, f"{core}.scalar"), (_ndarray_reconstruct, f"{core}._reconstruct")]
    pairs += [(InertConfig, name) for name in _TL_CONFIG_NAMES]
    return pairs + _numeric_dtype_classes()


def load(path: Path, *, placeholders: tuple[str, ...] = ()) -> Any:
    """``torch.load`` of ``path`` on the CPU, weights only, with :func:`allowlist`; numpy/stand-ins converted.

    ``placeholders``: further global names to read as inert :class:`Opaque` objects (used when the caller
    ignores the keys holding them, e.g. a config replaced by ``--spec``)."""
    extra = allowlist() + [(Opaque, name) for name in placeholders]
    with torch.serialization.safe_globals(extra):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    return plain(obj)


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, numpy arrays as tensors and stand-ins as dicts."""
    if isinstance(obj, dict):
        return type(obj)((k, plain(v)) for k, v in obj.items()) if type(obj) is not dict else \
            {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, InertConfig):
        return {k: plain(v) for k, v in vars(obj).items() if k != "_args"}
    return obj


# ----------------------------------------------------------------------------- diagnosis of a refused file


class Opaque:
    """Placeholder for a global a file asks for: records its name and arguments, never runs anything."""

    name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        return _opaque_class(self.name)(*args)


def _opaque_class(name: str) -> type:
    return type("Opaque", (Opaque,), {"name": name})


class _Diagnoser(pickle.Unpickler):
    """Unpickles ``data.pkl`` with every non-allowed global replaced by an :class:`Opaque` subclass."""

    def __init__(self, file: Any, allowed: set[str]) -> None:
        super().__init__(file, encoding="utf-8")
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full == "numpy.dtype":
            return _diagnose_dtype
        return _PlainStandIn if full in self.allowed else _opaque_class(full)

    def persistent_load(self, pid: Any) -> Any:
        return None


class _PlainStandIn:
    """An allowed global during diagnosis (tensor rebuild, numeric numpy): not reported, but what it holds is."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _diagnose_dtype(spec: Any = None, *args: Any) -> Any:
    try:
        numeric = np.dtype(spec).kind in _NUMERIC_KINDS if isinstance(spec, str) else False
    except TypeError:
        numeric = False
    return _PlainStandIn() if numeric else _opaque_class(f"numpy.dtype({spec!r}) (not numeric)")()


def unsafe_globals(path: Path) -> list[tuple[str, str]]:
    """Every ``(key path, global name)`` in ``path`` that :func:`load` refuses, e.g. ``("config", "os.system")``."""
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = set(_get_allowed_globals()) | {name for _, name in allowlist()}
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        obj = _Diagnoser(io.BytesIO(zf.read(pkl)), allowed).load()
    found = sorted(set(_walk(obj, "")))
    return found


def _walk(obj: Any, where: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    if depth > 50:
        return
    if isinstance(obj, _PlainStandIn):  # its arguments and state belong to the same key
        for child in (*getattr(obj, "args", ()), getattr(obj, "state", None)):
            for item in child if isinstance(child, tuple) else (child,):
                yield from _walk(item, where, depth + 1)
    elif isinstance(obj, Opaque) or (isinstance(obj, type) and issubclass(obj, Opaque)):
        yield (where or "(top level)", obj.name)
        children = [*getattr(obj, "args", ()), getattr(obj, "state", None)] if isinstance(obj, Opaque) else []
        for child in children:
            yield from _walk(child, where, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(k, where, depth + 1)
            yield from _walk(v, f"{where}.{k}" if where else str(k), depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]", depth + 1)


# ----------------------------------------------------------------------------- safe reading (the importers' entry)

# Top-level keys an import needs; an unsafe object anywhere else (a config, an optimizer, an argparse
# Namespace) can be read as an inert placeholder and ignored once --spec describes the run.
_WEIGHT_LIST_KEYS = ("state_dicts", "checkpoints")
_WEIGHT_KEYS = ("model", "model_state_dict", "state_dict")
_EPOCH_LIST_KEYS = ("epochs", "checkpoint_epochs")
_NEEDED_KEYS = (*_WEIGHT_LIST_KEYS, *_WEIGHT_KEYS, *_EPOCH_LIST_KEYS, "epoch", "train_indices", "test_indices",
                "train_data", "test_data", "train_losses", "test_losses")


def safe_torch_load(path: Path, *, spec_given: bool = False, notes: list[str] | None = None) -> Any:
    """Read ``path`` weights-only on the CPU (numeric numpy and inert config stand-ins allowed, see
    :func:`load`), with errors that say what is wrong with the file.

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
        with quiet_device_mesh():
            return gather_dtensors(load(path), path, notes)  # DTensors, if torch.distributed.tensor was imported
    except pickle.UnpicklingError as exc:
        if needs_dtensor(exc):  # an FSDP2 state dict: torch marks the DTensor classes safe once they are imported
            return _load_dtensors(path, notes)
        if not re.search(r"global|numpy|allowlisted", str(exc), re.IGNORECASE):  # garbage, not a pickle asking for code
            raise _unreadable(path, exc) from None
        return _load_with_unsafe_globals(path, exc, spec_given, notes)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever torch's unpickler raises on a damaged file (KeyError, …)
        raise _unreadable(path, exc) from None


def _load_dtensors(path: Path, notes: list[str] | None) -> Any:
    if not dtensor_classes_registered():
        raise CheckpointError(f"{str(path)!r} holds DTensors (an FSDP2 state dict saved with torch.save) and this "
                              f"torch build has no torch.distributed to read them; save the full tensors instead: "
                              f"torch.save({{k: v.full_tensor() for k, v in model.state_dict().items()}}, path)")
    try:
        with quiet_device_mesh():
            data = load(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{str(path)!r} holds DTensors (an FSDP2 state dict saved with torch.save) that "
                              f"torch's weights-only loader refuses ({first_line(exc)[:200]}); save the full tensors "
                              f"instead: torch.save({{k: v.full_tensor() for k, v in model.state_dict().items()}}, "
                              f"path)") from None
    return gather_dtensors(data, path, notes)


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    reason = first_line(exc).split(". ")[0]
    if "weights_only" in reason or "Weights only load failed" in reason:
        reason = type(exc).__name__  # torch's advice to load with weights_only=False is not ours to give
    detail = type(exc).__name__ + ("" if reason == type(exc).__name__ else f": {reason[:160]}")
    if path.suffix == ".distcp" or (path.parent / ".metadata").is_file():
        return CheckpointError(f"{str(path)!r} is one file of a torch.distributed.checkpoint (DCP) directory: import "
                               f"the directory {str(path.parent)!r} (or a folder of such directories)")
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
        found = unsafe_globals(path)
    except Exception:  # noqa: BLE001 - diagnosis is best effort; the refusal below still names torch's reason
        found = []
    keys = sorted({_top_key(where) for where, _ in found})
    spec_helps = bool(found) and all(k not in _NEEDED_KEYS and k != "(top level)" for k in keys) \
        and not any(name.startswith("numpy.dtype(") for _, name in found)  # object arrays cannot be skipped
    if spec_helps and spec_given:
        data = load(path, placeholders=tuple(sorted({name for _, name in found})))
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

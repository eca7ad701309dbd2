"""Atomic file writes and safetensors files: the one place that writes bytes to disk.

Every writer of claimlens (the run store, the analysis cache, the report) goes through these
helpers, so an interrupted write never leaves half a file: data goes to a temporary file in the
same folder and is renamed over the target. Importing this module imports no torch; the
safetensors helpers import it when called.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claimlens.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def cache_dir() -> Path:
    """Where claimlens caches built-in runs and analyses: ``$CLAIMLENS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/claimlens`` (default ``~/.cache/claimlens``)."""
    env = os.environ.get("CLAIMLENS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "claimlens"


# Why the cache directory cannot be written, per directory (None: it can); found once per process.
_CACHE_UNWRITABLE: dict[str, str | None] = {}


def cache_unwritable() -> str | None:
    """Why :func:`cache_dir` cannot be written (``Read-only file system``, ``Permission denied``, …), or None when
    it can: a temporary file is created in it and removed, once per process (a failed write of an analysis
    records its reason here too, :func:`note_cache_unwritable`)."""
    root = cache_dir()
    key = str(root)
    if key not in _CACHE_UNWRITABLE:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".claimlens-write-test-", dir=root)
            os.close(fd)
            os.unlink(tmp)
            _CACHE_UNWRITABLE[key] = None
        except OSError as exc:
            _CACHE_UNWRITABLE[key] = exc.strerror or str(exc)
    return _CACHE_UNWRITABLE[key]


def note_cache_unwritable(exc: OSError) -> None:
    """Record that writing into the cache failed (a read-only subfolder, a full disk)."""
    _CACHE_UNWRITABLE[str(cache_dir())] = exc.strerror or str(exc)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename (fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files and reports are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None  # name the file being written
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, trailing_newline: bool = True) -> None:
    """JSON (indent 1, no NaN: a non-finite number is an error, never invalid JSON on disk)."""
    text = json.dumps(obj, indent=1, allow_nan=False)
    atomic_write_text(path, text + "\n" if trailing_newline else text)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Save tensors as safetensors (atomically); returns the file's sha256."""
    from safetensors.torch import save

    data = save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


_RUN_FILE_ADVICE = "Copy or download it again; a run's own checkpoint can be rewritten by training the run again"


def load_tensors(path: Path, *, what: str, advice: str = _RUN_FILE_ADVICE) -> dict[str, torch.Tensor]:
    """Load a safetensors file, its tensors in name order; a missing, truncated or corrupt file gives a
    CheckpointError naming it (``advice``: what to do about a damaged one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{what}: file {str(path)!r} does not exist") from None
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":  # torch.save's zip, or a bare pickle
            raise CheckpointError(
                f"{what}: {str(path)!r} is a PyTorch pickle (torch.save), not a safetensors file; claimlens never "
                f"unpickles a run's checkpoint. Make a run of the original checkpoints with `claimlens import` "
                f"(it reads torch.save files without running their code)"
            ) from None
        raise CheckpointError(
            f"{what}: {str(path)!r} is not a readable safetensors file (truncated or corrupt: {exc}). {advice}"
        ) from None
    return {name: tensors[name] for name in sorted(tensors)}  # safetensors returns them in no fixed order


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

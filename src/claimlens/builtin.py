"""Built-in runs: specs shipped in ``fixtures/``, trained on first use and cached by spec hash.

This module sits above ``training`` and ``runs`` (the store and the importers): it is the only one
that both trains and opens runs, and it owns the cache directory that the analysis cache shares.

The cache lives in ``$CLAIMLENS_CACHE_DIR`` or, if unset, ``$XDG_CACHE_HOME/claimlens`` (default
``~/.cache/claimlens``); a run of spec ``default`` with hash ``3fa2…`` trained on the CPU is ``runs/default-3fa2…`` (on
a GPU the key is :meth:`RunSpec.key` of the spec and the device class: the numbers differ).
A file lock makes parallel sessions (pytest-xdist workers, two terminals) train it once; an
interrupted training is resumed, not restarted. A cache that cannot be written (read-only, another user's) still
serves the runs it holds; a run it lacks is refused before any training (:class:`CacheNotWritable`), and a
published model it lacks is imported into a temporary folder for the session (an import takes a second).
"""

from __future__ import annotations

from pathlib import Path

from claimlens._io import cache_dir, cache_unwritable, sha256_file
from claimlens.config import FIXTURES, RunSpec
from claimlens.errors import CacheNotWritable, RunError
from claimlens.runs.store import MANIFEST, Run
from claimlens.training import Trainer, device_class

__all__ = ["FIXTURES", "builtin_run", "builtin_spec_path", "cache_dir", "cached_run_path", "check_cache_writable",
           "ensure_imported", "ensure_run", "imported_run_path", "is_cached"]



def builtin_spec_path(name: str) -> Path:
    path = FIXTURES / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in FIXTURES.glob("*.toml")) if FIXTURES.is_dir() else []
        raise RunError(f"no built-in run spec named {name!r}; known: {known}")
    return path


def cached_run_path(spec: RunSpec, device: str = "auto") -> Path:
    """Where the cached run of ``spec`` trained on ``device`` is: ``runs/<name>-<key>`` (the key
    :meth:`RunSpec.key` of the device's class: the spec's hash on the CPU), or a complete run of the same key under
    another name (a sweep member identical to a built-in run is that run, trained once)."""
    key = spec.key(device_class(device))
    own = cache_dir() / "runs" / f"{spec.name}-{key[:16]}"
    if (own / MANIFEST).exists() or not own.parent.is_dir():
        return own
    for other in sorted(own.parent.glob(f"*-{key[:16]}")):
        if other.is_dir() and (other / MANIFEST).exists() and _complete(other):
            return other
    return own


def is_cached(spec: RunSpec, device: str = "auto") -> bool:
    """Whether the cache holds a complete run of ``spec`` trained on ``device``'s class (``ensure_run`` would open it
    without training)."""
    path = cached_run_path(spec, device)
    return (path / MANIFEST).exists() and _complete(path)


def _complete(path: Path) -> bool:
    from claimlens.runs.manifest import read_manifest

    try:
        return read_manifest(path).get("status") == "complete"
    except RunError:
        return False


def ensure_run(spec: RunSpec, *, device: str = "auto", progress: bool = True, provenance: dict | None = None) -> Run:
    """Open the cached run of ``spec`` trained on ``device`` (``auto``: CUDA when available, else the CPU; the device's
    class is part of the cache key), training (or resuming) it first if needed, in this process with its torch
    thread count (:mod:`claimlens.executor` trains several at once). The run carries ``spec``'s name even when the
    cache holds it under another spec's (a sweep member with the same cache key). ``provenance``: fields recorded in
    run.json's ``source`` when it is trained here (the executor)."""
    from filelock import FileLock

    path = cached_run_path(spec, device)
    if _complete(path):  # no lock needed to read a complete run (a read-only cache holds no lock files)
        return Run.open(path).named(spec.name)
    check_cache_writable(f"the run of spec {spec.name!r} is not in it and must be trained")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / MANIFEST).exists():
            try:
                return Run.open(path).named(spec.name)
            except RunError:
                pass  # incomplete: the trainer resumes it
        return Trainer(spec, path, device=device, progress=progress, provenance=provenance).train().named(spec.name)


def check_cache_writable(why: str) -> None:
    """Raise :class:`CacheNotWritable` (one line, before any work) when the cache cannot be written; ``why`` says
    what needed to write there."""
    reason = cache_unwritable()
    if reason is not None:
        raise CacheNotWritable(
            f"the cache {str(cache_dir())!r} cannot be written ({reason}) and {why}: set CLAIMLENS_CACHE_DIR to a "
            f"writable folder (the runs already in the read-only one can be copied there), or train it elsewhere "
            f"(`claimlens train SPEC.toml --out RUN`) and pass --run RUN")


def imported_run_path(source: Path, name: str, digest: str | None = None) -> Path:
    """Where the cache keeps the import of the checkpoint file ``source``: ``imports/<name>-<digest>``, the digest the
    sha256 of the file unless given (a run from the Hub: of its file's sha256 and commit)."""
    if digest is None:
        digest = sha256_file(Path(source))
    return cache_dir() / "imports" / f"{name}-{digest[:16]}"


def ensure_imported(source: Path, name: str, *, digest: str | None = None, hub: dict | None = None,
                    progress: bool = True) -> Run:
    """Open the cached import of the checkpoint file (or folder) ``source`` under ``name`` (a published model shipped
    with claimlens, ``zhong2023_model_a``; a run on the Hub, ``hub`` its provenance recorded in run.json), importing it
    first if needed, as ``claimlens import SOURCE --name NAME`` would. A file lock makes parallel sessions import it
    once; an import is written whole or not at all."""
    from filelock import FileLock

    from claimlens.runs.importers import import_run

    path = imported_run_path(source, name, digest)
    if (path / MANIFEST).exists():
        return Run.open(path)
    if cache_unwritable() is not None:  # an import takes a second: made for this process only, in a temporary folder
        scratch = _scratch() / path.name
        if (scratch / MANIFEST).exists():
            return Run.open(scratch)
        return import_run(source, scratch, name=name, hub=hub, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / MANIFEST).exists():
            return Run.open(path)
        return import_run(source, path, name=name, hub=hub, progress=progress)


def _scratch() -> Path:
    """A temporary folder for this process's imports when the cache cannot be written, removed at exit."""
    global _SCRATCH
    if _SCRATCH is None:
        import atexit
        import shutil
        import tempfile

        _SCRATCH = Path(tempfile.mkdtemp(prefix="claimlens-imports-"))
        atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
    return _SCRATCH


_SCRATCH: Path | None = None


def builtin_run(name: str = "default", **kwargs) -> Run:
    """The cached run of the built-in spec ``fixtures/<name>.toml``."""
    return ensure_run(RunSpec.from_toml(builtin_spec_path(name)), **kwargs)

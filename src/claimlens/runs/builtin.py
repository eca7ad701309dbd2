"""Built-in runs: specs shipped in ``fixtures/``, trained on first use and cached by spec hash.

The cache lives in ``$CLAIMLENS_CACHE_DIR`` or, if unset, ``$XDG_CACHE_HOME/claimlens`` (default
``~/.cache/claimlens``); a run of spec ``default`` with hash ``3fa2…`` is ``runs/default-3fa2…``.
A file lock makes parallel sessions (pytest-xdist workers, two terminals) train it once; an
interrupted training is resumed, not restarted.
"""

from __future__ import annotations

import os
from pathlib import Path

from claimlens.config import RunSpec
from claimlens.errors import RunError
from claimlens.runs.store import MANIFEST, Run

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


def cache_dir() -> Path:
    env = os.environ.get("CLAIMLENS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "claimlens"


def builtin_spec_path(name: str) -> Path:
    path = FIXTURES / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in FIXTURES.glob("*.toml")) if FIXTURES.is_dir() else []
        raise RunError(f"no built-in run spec named {name!r}; known: {known}")
    return path


def cached_run_path(spec: RunSpec) -> Path:
    return cache_dir() / "runs" / f"{spec.name}-{spec.hash[:16]}"


def ensure_run(spec: RunSpec, *, device: str = "cpu", progress: bool = True) -> Run:
    """Open the cached run of ``spec``, training (or resuming) it first if needed."""
    from filelock import FileLock

    from claimlens.training import Trainer

    path = cached_run_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / MANIFEST).exists():
            try:
                return Run.open(path)
            except RunError:
                pass  # incomplete: the trainer resumes it
        return Trainer(spec, path, device=device, progress=progress).train()


def builtin_run(name: str = "default", **kwargs) -> Run:
    """The cached run of the built-in spec ``fixtures/<name>.toml``."""
    return ensure_run(RunSpec.from_toml(builtin_spec_path(name)), **kwargs)

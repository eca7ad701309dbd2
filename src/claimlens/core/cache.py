"""The one on-disk cache of analyses: safetensors files keyed by run, analysis version and arguments.

An entry of analysis ``kind`` lives at ``<cache dir>/<kind>/<run content hash[:32]>/<digest>.safetensors``,
where the digest covers the analysis version and its arguments (canonical JSON). A damaged entry is
recomputed, never trusted; entries are written atomically, so parallel sessions at worst compute twice. A cache
that cannot be written (a read-only or shared ``$CLAIMLENS_CACHE_DIR``) is read, and new analyses are kept in memory
only. The
run's files are checked against its manifest before an entry is read or written (a truncated or replaced
checkpoint is an error, whatever is cached), and a run whose manifest spec was edited gets a key of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from claimlens._io import cache_dir, cache_unwritable, note_cache_unwritable, save_tensors
from claimlens.config import canonical_json


@dataclass(frozen=True)
class AnalysisCache:
    """The cache of one analysis ``kind`` (``"series"``, ``"llc"``) at version ``version``."""

    kind: str
    version: int

    def path(self, run, args: dict[str, Any]) -> Path:
        """Where the entry of ``run`` and ``args`` lives. A run directory's checkpoint files are checked against
        its manifest first (:meth:`claimlens.runs.store.Run.verify_files`): an analysis cached for a run is never
        read, nor one written, for files that are not the run's (raises :class:`claimlens.errors.CheckpointError`
        naming the file)."""
        digest = hashlib.sha256(canonical_json({"v": self.version, **args}).encode()).hexdigest()[:16]
        verify = getattr(run, "verify_files", None)
        if verify is not None:
            verify()
        key = getattr(run, "analysis_key", run.content_hash)
        return cache_dir() / self.kind / key[:32] / f"{digest}.safetensors"

    def load(self, run, args: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """The stored tensors and metadata, or None if absent or damaged."""
        from safetensors import safe_open

        path = self.path(run, args)
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except Exception:  # a damaged cache entry is recomputed, never trusted
            return None

    def save(self, run, args: dict[str, Any], tensors: dict[str, torch.Tensor], metadata: dict[str, str]
             ) -> Path | None:
        """Store an entry; None when the cache cannot be written (read-only, another user's, full): the analysis
        was computed and is used from memory, and the session says once that it was not kept
        (:func:`claimlens._io.cache_unwritable`)."""
        path = self.path(run, args)
        if cache_unwritable() is not None:
            return None
        try:
            save_tensors(path, tensors, metadata={**metadata, "version": str(self.version)})
        except OSError as exc:
            note_cache_unwritable(exc)
            return None
        return path

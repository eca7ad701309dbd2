"""The run manifest (``run.json``): its schema and the one validated way to read it.

Cheap on purpose (no torch): the pytest plugin reads manifests while it parametrizes tests.
:mod:`claimlens.runs.store` builds on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from claimlens.errors import RunError

SCHEMA_VERSION = 1
MANIFEST = "run.json"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The validated manifest of the run directory ``path`` (cheap: no checkpoint is read).

    The only reader of ``run.json``: every other module asks the store. Raises :class:`RunError` naming
    the directory and what is wrong (missing, not JSON, wrong schema version, a required key missing,
    epochs not increasing)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise RunError(f"run directory {str(path)!r} does not exist")
    if not manifest_path.is_file():
        raise RunError(
            f"{str(path)!r} is not a claimlens run: it has no {MANIFEST}. Train one with "
            f"`claimlens train SPEC --out DIR` or import checkpoints with `claimlens import SOURCE --out DIR`"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{str(manifest_path)!r} is not valid JSON ({exc})") from None
    _check_manifest(manifest, manifest_path)
    return manifest


def _check_manifest(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict):
        raise RunError(f"{str(path)!r} must hold a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunError(f"{str(path)!r} has schema_version {version!r}; this claimlens reads version {SCHEMA_VERSION}")
    for key in ("name", "spec", "split", "checkpoints", "status", "content_hash"):
        if key not in manifest:
            raise RunError(f"{str(path)!r} lacks the required key {key!r}")
    epochs = [c.get("epoch") for c in manifest["checkpoints"]]
    if any(not isinstance(e, int) for e in epochs) or epochs != sorted(set(epochs)):
        raise RunError(f"{str(path)!r}: checkpoint epochs must be distinct integers in increasing order; got {epochs[:10]}")


def where_trained(source: dict) -> str:
    """Where a trained run was trained, from run.json's ``source``: ``cpu, 1 thread, pool`` (the device, the intra-op
    thread count, the executor; what an older claimlens did not record is left out); empty for an import."""
    if source.get("kind") != "trained":
        return ""
    threads = source.get("threads")
    parts = [str(source.get("device_class") or source.get("device") or "")]
    if threads is not None:
        counts = threads if isinstance(threads, list) else [threads]
        parts.append(f"{'/'.join(map(str, counts))} thread{'s' * (counts != [1])}")
    if source.get("executor"):
        parts.append(str(source["executor"]))
    return ", ".join(p for p in parts if p)

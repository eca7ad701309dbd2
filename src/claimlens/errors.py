"""Errors claimlens raises on purpose.

Every error a user can trigger with bad input (a spec, a checkpoint, a run directory) is a
``ClaimlensError`` whose message names the thing that is wrong, the rule it breaks and the value
found, so that no traceback from deep inside torch is needed to understand it.
"""

from __future__ import annotations


class ClaimlensError(Exception):
    """Base class: a problem with the user's input, reported without a deep traceback."""


class SpecError(ClaimlensError, ValueError):
    """A run spec (TOML) or a config dict is invalid."""


class RunError(ClaimlensError):
    """A run directory is missing, incomplete or inconsistent."""


class CacheNotWritable(RunError):
    """A run must be trained into the cache (``$CLAIMLENS_CACHE_DIR``) and the cache cannot be written (read-only,
    another user's): refused before any training."""


class CheckpointError(ClaimlensError):
    """A checkpoint file cannot be read or holds weights that do not fit the run's config."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need arbitrary code to be unpickled; claimlens refuses to load it."""


class SplitUnknown(RunError):
    """A measure needs the run's train/test split, and the split is unknown (the source saved none and no rule
    rebuilds it). The plugin turns it into a skip with this message: the claim is not judged, never judged on a
    made-up split (DESIGN.md, "Task grid")."""

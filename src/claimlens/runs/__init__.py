"""Runs: the on-disk store, importers of published formats, and the cached built-in runs."""

from claimlens.runs.store import Run, RunWriter

__all__ = ["Run", "RunWriter"]

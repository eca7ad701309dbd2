"""Runs: the on-disk store (:mod:`~claimlens.runs.store`, manifest in :mod:`~claimlens.runs.manifest`) and the
importers of published formats (:mod:`~claimlens.runs.importers`). Built-in runs: :mod:`claimlens.builtin`."""

from __future__ import annotations

__all__ = ["Run", "RunWriter"]


def __getattr__(name: str):
    if name in __all__:  # lazily: reading a manifest must not import torch
        from claimlens.runs import store

        return getattr(store, name)
    raise AttributeError(f"module 'claimlens.runs' has no attribute {name!r}")

"""Memory flat in the number of checkpoints: the per-run analyses walk a run's checkpoints in chunks
(:func:`chunks`), write each checkpoint's measures into series allocated once, and give the memory a chunk freed back
to the operating system before the next (:func:`release_freed_memory`).

Why. One checkpoint's forward pass over the ``p²`` grid of a p = 113 model is tens of MB (``mlp_pre`` and
``mlp_post`` are ``[12 769, 512]`` float32, 26 MB each); it is freed as soon as the checkpoint's measures are taken,
and only those (a few kB) are kept. The analysis never held two checkpoints' activations, yet a 400-checkpoint run
peaked at 15.1 GB: glibc's allocator serves blocks of that size from the process heap once one has been freed (its
mmap threshold rises to the freed size), and the small tensors kept per checkpoint, allocated among the freed blocks,
stop the heap from shrinking. Measured on a p = 113 run, keeping each checkpoint's measures as separate tensors grew
the resident memory by 40–60 MB per checkpoint; writing them into series allocated before the loop, or calling
``malloc_trim`` after each checkpoint, kept it flat (0.34–0.56 GB over 24 checkpoints). The analyses do both, the
second once per chunk (10–40 ms a call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TypeVar

T = TypeVar("T")

CHUNK_CHECKPOINTS = 16  # checkpoints per chunk: the freed memory of at most this many is held before it is released


def chunks(items: Sequence[T], size: int | None = None) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of ``size`` (default :data:`CHUNK_CHECKPOINTS`; the last may be shorter), in
    order. Raises ``ValueError`` for a size below 1."""
    size = CHUNK_CHECKPOINTS if size is None else int(size)
    if size < 1:
        raise ValueError(f"chunk size must be ≥ 1 checkpoint, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Give the pages the process has freed back to the operating system (glibc ``malloc_trim(0)``; a few ms).
    True when it ran, False where the C library has no such call (its allocator then returns memory its own way)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["CHUNK_CHECKPOINTS", "chunks", "release_freed_memory"]

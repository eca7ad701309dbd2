"""Analyses over a run: every checkpoint's measures as per-epoch :class:`claimlens.series.Series`, cached on disk.

``progress``: the progress measures of Nanda et al. 2023 and ARENA over every checkpoint (one forward
pass per checkpoint). ``llc``: the local learning coefficient at sampled checkpoints. ``checkpoint``:
one checkpoint with its forward pass computed once. ``cache``: the one on-disk cache, keyed by the run's
content hash, the analysis version and its arguments.

Data flows one way: run store → analysis (cached) → series → claims → records → report.
"""

from claimlens.analysis.checkpoint import Checkpoint, final_checkpoint
from claimlens.analysis.llc import LLCEstimates, llc_over_run
from claimlens.analysis.progress import ProgressMeasures, evaluate

__all__ = ["Checkpoint", "LLCEstimates", "ProgressMeasures", "evaluate", "final_checkpoint", "llc_over_run"]

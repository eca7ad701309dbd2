"""What the claim families share: the Fourier basis (:mod:`~claimlens.core.fourier`), losses
(:mod:`~claimlens.core.losses`), weight norms (:mod:`~claimlens.core.weights`), per-epoch series and their temporal
helpers (:mod:`~claimlens.core.series`), claim specs, thresholds and verdicts (:mod:`~claimlens.core.verdicts`), the
sources the claims cite (:mod:`~claimlens.core.sources`), the sampling of checkpoints
(:mod:`~claimlens.core.sampling`), the analysis cache (:mod:`~claimlens.core.cache`) and a checkpoint with its forward
pass (:mod:`~claimlens.core.checkpoint`), and the one conversion of values to JSON (:mod:`~claimlens.core.jsonable`). Importing this package imports nothing else.
"""

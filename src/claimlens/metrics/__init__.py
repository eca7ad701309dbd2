"""Pure metric functions (tensors in, tensors out): no files, no pytest, no plotting.

``fourier``: basis, transforms, trig directions, key frequencies. ``losses``: float64 cross entropy.
``progress``: the progress measures of Nanda et al. 2023 and the ARENA material.
"""

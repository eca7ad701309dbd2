"""The llc family: the local learning coefficient over training (catalogue §3.2)."""

"""The induction family: induction heads and the phase change of a small attention-only model (catalogue §3.6)."""

"""The mlp family: the MLPs of 'Grokking with weight decay' (catalogue §3.5)."""

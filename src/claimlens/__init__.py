"""claimlens: published claims about training dynamics as pytest tests over a run's checkpoints."""

__version__ = "0.1.0"

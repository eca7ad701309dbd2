"""The lowrank family: low-rank trajectories: gradient updates, checkpoint matrices, per-example losses (§3.4, §3.7)."""

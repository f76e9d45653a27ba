"""Training: optimisers and schedules per phase, the loop, checkpoints."""

"""Training: devices and precision, optimisers and schedules per phase, the loop, checkpoints."""

"""Inference: load trained snapshots, predict tiles with test-time augmentation, average."""

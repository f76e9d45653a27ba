"""The tiny model and one-phase schedule that subprocess training tests share (fast on CPU)."""

from __future__ import annotations

TINY_MODEL = {"encoder_name": "resnet10t", "decoder_channels": [16, 16, 8, 8, 8]}


def tiny_train_params(epochs: int) -> dict:
    """``saltseg train --params`` for a tiny U-Net: one Adam/cosine phase, batch 4, one snapshot."""
    return {
        "arch": "unet",
        "model": TINY_MODEL,
        "augment": [{"name": "HorizontalFlip", "p": 0.5}],
        "phases": [
            {
                "loss": "bce_dice",
                "optimizer": "adam",
                "lr": 0.003,
                "schedule": "cosine",
                "epochs": epochs,
                "batch_size": 4,
                "snapshots": 1,
            }
        ],
    }

"""A torch Dataset over in-memory tiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    import albumentations as A


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W) uint8`` → ``(N, 1, H, W) float32`` in [0, 1], the network's input scale."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255).unsqueeze(1)


class TileDataset(Dataset):
    """Images (and masks) ``(N, H, W) uint8``; items are ``(1, H, W)`` float tensors.

    Args:
        images: tiles.
        masks: 0/1 masks, or None for unlabelled tiles (items are then images only).
        augment: an albumentations pipeline applied to image and mask together.
    """

    def __init__(
        self, images: np.ndarray, masks: np.ndarray | None = None, augment: A.Compose | None = None
    ) -> None:
        self.images, self.masks, self.augment = images, masks, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.masks is None:
            return to_tensor(image[None])[0]
        mask = self.masks[index]
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return to_tensor(image[None])[0], torch.from_numpy(np.ascontiguousarray(mask)).float()[None]

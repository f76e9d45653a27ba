"""PNG tiles: read 8/16-bit grayscale or RGB into uint8 grayscale, write 8-bit grayscale."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from saltseg.errors import InputError
from saltseg.io import atomic_path


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a tile as a 2-D ``uint8`` array (16-bit scaled down, colour converted to grey).

    Kaggle's RGB tiles carry three equal channels, which the conversion keeps as they are; a tile
    whose channels differ becomes its luminance (OpenCV's BGR/BGRA to grey), not one channel.

    Raises:
        InputError: the file is missing or unreadable, or is not ``size`` x ``size`` when given.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "expected an image file, found none")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "expected a readable PNG image (file is corrupt or not an image)")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    elif image.ndim == 3:
        raise InputError(path, f"expected a grey, RGB or RGBA image, got {image.shape[2]} channels")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(path, f"expected an 8- or 16-bit image, got {image.dtype}")
    if size is not None and image.shape != (size, size):
        raise InputError(
            path, f"expected a {size}x{size} tile, got {image.shape[0]}x{image.shape[1]}"
        )
    return image


def read_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a mask PNG as a 2-D ``uint8`` array of 0/1 (any non-zero pixel is salt)."""
    return (read_image(path, size) > 0).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a 2-D ``uint8`` array as an 8-bit grayscale PNG, atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(image, dtype=np.uint8)):
            raise OSError(f"{path}: could not write PNG")

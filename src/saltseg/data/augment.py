"""Augmentations: an albumentations 2 pipeline described in config as a list of transforms.

albumentations is imported on first use: training on the batch path, and prediction, never load it
(about a second of every job's start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saltseg.errors import InputError

if TYPE_CHECKING:
    import albumentations as A


def build_augment(spec: list[dict[str, Any]]) -> A.Compose | None:
    """``[{"name": "HorizontalFlip", "p": 0.5}, ...]`` → ``A.Compose``; ``[]`` → None.

    Each item names an albumentations transform; the other keys are its arguments. Image and mask
    go through the same transform, so they stay aligned.
    """
    if not spec:
        return None
    import albumentations as A

    transforms = []
    for item in spec:
        item = dict(item)
        name = item.pop("name", None)
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise InputError("augment", f"{name!r} is not an albumentations transform")
        try:
            transforms.append(cls(**item))
        except (TypeError, ValueError) as err:
            raise InputError("augment", f"{name}: {err}".splitlines()[0]) from None
    return A.Compose(transforms)

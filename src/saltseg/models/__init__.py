"""Models assembled from parts: geometry → timm encoder → center → decoder → fuse → heads.

``ARCHITECTURES`` holds the presets (``unet``, ``bes_resnext50``, ``phalanx_resnet34``,
``pad128``, ``resize128``); each takes every keyword of :func:`~saltseg.models.presets.assemble`.
"""

from saltseg.models.model import ARCHITECTURES, SegmentationModel, build_model
from saltseg.models.summary import model_summary

__all__ = ["ARCHITECTURES", "SegmentationModel", "build_model", "model_summary"]

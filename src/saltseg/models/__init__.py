"""Models assembled from parts: input geometry → timm encoder → decoder → segmentation head."""

from saltseg.models.model import ARCHITECTURES, SegmentationModel, build_model

__all__ = ["ARCHITECTURES", "SegmentationModel", "build_model"]

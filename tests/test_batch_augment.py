"""Batch augmentation: the same transforms as albumentations, on whole batches, aligned masks."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import yaml
from albumentations.augmentations.geometric import functional as fgeometric

from saltseg.data.augment import build_augment
from saltseg.data.batch_augment import (
    DeviceBatches,
    affine_inverse,
    build_batch_augment,
    warp,
)

# the default config's list: flip, brightness, contrast, Affine with reflected borders
DEFAULT = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())["augment"]


def smooth_tiles(n: int, size: int = 101, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((n, size, size)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(t, (0, 0), 3) for t in noise])


def salt_masks(n: int, size: int = 101, seed: int = 0) -> np.ndarray:
    """Discs of random centre and radius: masks whose shape any misalignment would show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    for _ in range(n):
        cx, cy, r = rng.uniform(20, 80), rng.uniform(20, 80), rng.uniform(10, 30)
        masks.append(((xx - cx) ** 2 + (yy - cy) ** 2 < r**2).astype(np.uint8))
    return np.stack(masks)


@pytest.mark.parametrize(
    "border, scale, translate, angle, shear",
    [
        (4, (0.4, 1.6), (-16, 12), 0.0, (0.0, 0.0)),  # the default list's kind of draw
        (4, (1.3, 1.3), (5, -9), 17.0, (0.0, 0.0)),
        (0, (0.8, 1.1), (3, 3), -30.0, (10.0, -5.0)),
        (1, (1.5, 0.7), (-20, 0), 45.0, (0.0, 0.0)),
        (2, (0.6, 0.6), (0, 7), 0.0, (0.0, 0.0)),
    ],
)
def test_affine_matches_albumentations_warp_for_the_same_parameters(
    border, scale, translate, angle, shear
):
    """The matrix is albumentations' own (create_affine_transformation_matrix); its warp is
    cv2.warpAffine through A.Affine.apply. Bilinear images agree to cv2's 1/32-pixel fixed
    point; nearest-neighbour masks agree except on ties."""
    image = smooth_tiles(1)[0]
    mask = salt_masks(1)[0]
    h, w = image.shape
    matrix = fgeometric.create_affine_transformation_matrix(
        {"x": translate[0], "y": translate[1]},
        {"x": shear[0], "y": shear[1]},
        {"x": scale[0], "y": scale[1]},
        angle,
        fgeometric.center((h, w)),
    )
    transform = A.Affine(border_mode=border, p=1.0)
    expected = transform.apply(image, matrix=matrix, output_shape=(h, w))
    expected_mask = transform.apply_to_mask(mask, matrix=matrix, output_shape=(h, w))

    def one(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float32)

    inverse = affine_inverse(
        h,
        w,
        (one(scale[0]), one(scale[1])),
        (one(translate[0]), one(translate[1])),
        one(angle),
        (one(shear[0]), one(shear[1])),
    )
    x = torch.from_numpy(image)[None, None]
    y = torch.from_numpy(mask).float()[None, None]
    got, got_mask = warp(x, y, inverse, "bilinear", border)
    diff = np.abs(got[0, 0].numpy() - np.clip(expected, 0, 1))
    assert diff.mean() < 2e-3 and diff.max() < 0.03, (diff.mean(), diff.max())
    assert np.mean(got_mask[0, 0].numpy() != expected_mask) < 0.005


def test_image_and_mask_stay_aligned_under_the_default_list():
    masks = salt_masks(64)
    images = masks.astype(np.float32)  # an image that is its mask: any offset would show
    augment = build_batch_augment([t for t in DEFAULT if t["name"] != "RandomBrightnessContrast"])
    x = torch.from_numpy(images)[:, None]
    y = torch.from_numpy(masks).float()[:, None]
    gen = torch.Generator().manual_seed(0)
    out_x, out_y = augment(x, y, gen)
    changed = (out_y != y).flatten(1).any(1)
    assert 0.7 < changed.float().mean() < 1.0  # flips and affines moved most tiles
    agree = ((out_x > 0.5).float() == out_y).float().mean(dim=(1, 2, 3))
    assert agree.min() > 0.98  # bilinear edges aside, image and mask coincide


def test_draws_follow_the_albumentations_ranges_and_probabilities():
    """Statistics over many tiles of the batch path and of albumentations itself agree: the
    share of tiles each transform touches, brightness shifts, and mask area under scaling."""
    n = 600
    masks = salt_masks(n, seed=1)
    images = np.full((n, 101, 101), 128, np.uint8)

    def stats(out_images: np.ndarray, out_masks: np.ndarray) -> dict[str, float]:
        shift = out_images.reshape(n, -1).mean(1) - 128 / 255
        ratio = out_masks.reshape(n, -1).sum(1) / masks.reshape(n, -1).sum(1)
        return {
            "brightened": np.mean(np.abs(shift) > 1e-3),
            "shift_std": shift[np.abs(shift) > 1e-3].std(),
            "moved": np.mean(np.any(out_masks != masks, axis=(1, 2))),
            "area_median": np.median(ratio),
            "area_q90": np.quantile(ratio, 0.9),
        }

    spec = [DEFAULT[1], DEFAULT[3]]
    pipeline = build_augment(spec)
    pipeline.set_random_seed(0)
    outs = [pipeline(image=i, mask=m) for i, m in zip(images, masks)]
    reference = stats(
        np.stack([o["image"] for o in outs]).astype(np.float32) / 255,
        np.stack([o["mask"] for o in outs]),
    )
    x = torch.from_numpy(images).float()[:, None] / 255
    y = torch.from_numpy(masks).float()[:, None]
    out_x, out_y = build_batch_augment(spec)(x, y, torch.Generator().manual_seed(0))
    got = stats(out_x[:, 0].numpy(), out_y[:, 0].numpy().astype(np.uint8))
    assert got["brightened"] == pytest.approx(0.2, abs=0.06)
    assert got["brightened"] == pytest.approx(reference["brightened"], abs=0.07)
    assert got["shift_std"] == pytest.approx(0.4 / np.sqrt(12), rel=0.2)  # U(-0.2, 0.2)
    assert got["shift_std"] == pytest.approx(reference["shift_std"], rel=0.25)
    assert got["moved"] == pytest.approx(reference["moved"], abs=0.07)
    assert got["area_median"] == pytest.approx(reference["area_median"], rel=0.2)
    assert got["area_q90"] == pytest.approx(reference["area_q90"], rel=0.2)


def test_only_transforms_with_a_batch_form_are_taken():
    assert build_batch_augment(DEFAULT) is not None
    assert build_batch_augment([]) is not None
    assert build_batch_augment([{"name": "ElasticTransform", "p": 0.5}]) is None
    assert build_batch_augment([{"name": "Affine", "border_mode": 3}]) is None  # wrap
    assert build_batch_augment([{"name": "Affine", "fill": 7, "border_mode": 0}]) is None


def test_device_batches_cover_every_tile_once_and_replay_by_seed():
    images = np.arange(10, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
    masks = (images % 2).astype(np.uint8)
    batches = DeviceBatches(images, masks, 3, torch.device("cpu"), build_batch_augment([]))
    assert len(batches) == 3  # the last partial batch is dropped
    batches.set_seed(5)
    first = [(x[:, 0, 0, 0] * 255).round().int().tolist() for x, _ in batches]
    seen = [v for batch in first for v in batch]
    assert len(seen) == 9 and len(set(seen)) == 9
    batches.set_seed(5)
    assert [(x[:, 0, 0, 0] * 255).round().int().tolist() for x, _ in batches] == first
    for x, y in batches:  # masks travel with their tiles
        assert torch.equal(y[:, 0, 0, 0], ((x[:, 0, 0, 0] * 255).round() % 2).float())

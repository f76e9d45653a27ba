"""Predict probability maps with flip test-time augmentation, averaged over snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saltseg.data.dataset import to_tensor
from saltseg.errors import InputError
from saltseg.inference.fusion import fuse_conv_bn
from saltseg.models import build_model
from saltseg.runtime.device import Runtime

TTA = {
    "none": (lambda x: x, lambda y: y),
    "hflip": (lambda x: x.flip(-1), lambda y: y.flip(-1)),
}


@torch.inference_mode()
def predict_probs(
    model: nn.Module,
    images: np.ndarray,
    runtime: Runtime,
    batch_size: int = 64,
    tta: tuple[str, ...] = ("none",),
) -> np.ndarray:
    """Sigmoid probabilities ``(N, T, T) float32`` of ``model`` on ``(N, H, W) uint8`` inputs.

    ``T`` is the model's tile (``H`` itself, or less for context windows). Each TTA transform is
    applied to the input and inverted on the output; probabilities (not logits) are averaged.
    The batch norms are folded into their convolutions first (:func:`fuse_conv_bn`).
    """
    unknown = set(tta) - set(TTA)
    if unknown:
        raise InputError("tta", f"expected names from {', '.join(TTA)}, got {sorted(unknown)}")
    side = getattr(getattr(model, "geometry", None), "tile", images.shape[-1])
    out = np.empty((len(images), side, side), dtype=np.float32)
    if len(images):
        model = fuse_conv_bn(model, runtime.to(to_tensor(images[:2])))
    for start in range(0, len(images), batch_size):
        x = runtime.to(to_tensor(images[start : start + batch_size]))
        total = torch.zeros((len(x), 1, side, side), device=runtime.device)
        for name in tta:
            forward, back = TTA[name]
            with runtime.autocast():
                total += back(torch.sigmoid(model(forward(x)).float()))
        out[start : start + len(x)] = (total / len(tta))[:, 0].cpu().numpy()
    return out


def load_snapshots(path: str | Path, runtime: Runtime) -> list[nn.Module]:
    """Every snapshot stored in a ``model.pt`` written by training, ready for inference."""
    bundle = read_bundle(path)
    models = []
    for k, state in enumerate(bundle["snapshots"]):
        if not all(t.isfinite().all() for t in state.values() if t.is_floating_point()):
            raise InputError(
                path, f"expected finite weights, snapshot {k} holds NaN or inf (training diverged?)"
            )
        model = build_model(
            bundle["arch"], bundle["tile"], **{**bundle["model"], "pretrained": "none"}
        )
        model.load_state_dict(state)
        model.to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        models.append(model.eval())
    return models


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read a ``model.pt`` bundle: ``arch``, ``model`` (kwargs), ``tile``, ``snapshots``."""
    if not Path(path).is_file():
        raise InputError(path, "expected a saltseg model.pt, found none")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and pickle raise many types on a corrupt file
        reason = (str(err).splitlines() or [""])[0][:200] or type(err).__name__
        raise InputError(
            path, f"expected a saltseg model.pt, the file is truncated or corrupt ({reason})"
        ) from None
    if not isinstance(bundle, dict) or not {"arch", "model", "tile", "snapshots"} <= set(bundle):
        raise InputError(path, "expected a saltseg model.pt with arch, model, tile and snapshots")
    if not isinstance(bundle["snapshots"], list) or not bundle["snapshots"]:
        raise InputError(path, "expected a saltseg model.pt with at least one snapshot")
    return bundle


def predict_ensemble(
    models: list[nn.Module], images: np.ndarray, runtime: Runtime, batch_size: int, tta
) -> np.ndarray:
    """The mean of :func:`predict_probs` over ``models`` (snapshots of one fold)."""
    total = sum(predict_probs(model, images, runtime, batch_size, tuple(tta)) for model in models)
    return total / len(models)

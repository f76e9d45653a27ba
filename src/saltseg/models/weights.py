"""Create timm backbones with ``pretrained: none | imagenet | PATH``, failing fast when offline.

``imagenet`` takes the weights from the Hugging Face cache when they are there; otherwise it
downloads them, but only after a 3-second check that the hub answers, so a machine without
network fails within seconds with one line instead of waiting on retries.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import timm
from torch import nn

from saltseg.errors import InputError

PRETRAINED_CHOICES = "'none', 'imagenet' or a path to a local weights file"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def create_timm(name: str, pretrained: str, kwargs: dict) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with the weights that ``pretrained`` names."""
    if pretrained == "none":
        return timm.create_model(name, pretrained=False, **kwargs)
    if pretrained == "imagenet":
        _check_imagenet_reachable(name)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # network, cache and hub errors all mean the same to a user
            _fail(
                name, f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            )
    path = Path(pretrained)
    if not path.is_file():
        raise InputError("pretrained", f"expected {PRETRAINED_CHOICES}, got {pretrained!r}")
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
    )


def _check_imagenet_reachable(name: str) -> None:
    """Raise at once unless the weights are cached or the hub answers within 3 seconds."""
    import huggingface_hub

    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    if repo is None:
        return  # weights come from a plain URL: timm's own download handles it
    for filename in WEIGHT_FILES:
        if isinstance(huggingface_hub.try_to_load_from_cache(repo, filename), str):
            return
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        _fail(name, f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    host = urlparse(huggingface_hub.constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        _fail(name, f"{repo} is not cached and {host} cannot be reached ({err})")


def _fail(name: str, why: str) -> None:
    raise InputError(
        "pretrained",
        f"could not load ImageNet weights for {name} ({why}); put them in the Hugging Face cache, "
        "give a local weights path, or set pretrained: none",
    ) from None

"""Fold batch norms into the convolutions before them, for inference."""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


@torch.no_grad()
def fuse_conv_bn(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    """An eval-mode copy of ``model`` with each batch norm folded into its convolution.

    A ``Conv2d`` (or a ``Sequential`` ending in one) directly followed, among its parent's
    children, by a plain ``BatchNorm2d`` (our ``ConvBnRelu``, timm's ResNet blocks, downsamples
    and deep stems) becomes one convolution and the norm an identity: one pass over the
    activations fewer (5-23 % more forwards per second on CPU,
    ``bench/records/predict_speed.json``).
    Registration order is not data flow, so the copy is checked on ``probe`` (an input batch)
    in full precision, TF32 off (cuDNN's default TF32 convolutions differ at ~1e-3 by
    themselves); where it disagrees with ``model``, ``model`` itself is returned, in eval mode,
    and the first such model of the process is logged.
    """
    model.eval()
    fused = copy.deepcopy(model)
    count = 0
    for parent in fused.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if type(bn) is not nn.BatchNorm2d:
                continue
            if isinstance(conv, nn.Sequential) and len(conv):  # a deep stem's last conv
                conv_name, parent_of_conv, conv = str(len(conv) - 1), conv, conv[-1]
            else:
                parent_of_conv = parent
            if isinstance(conv, nn.Conv2d):
                setattr(parent_of_conv, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                count += 1
    if not count:
        return model
    with _full_precision():
        expected, got = model(probe).float(), fused(probe).float()
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-3):
        if not _warned:
            log.warning("conv+bn fusion changed the outputs of %s; predicting unfused", type(model))
            _warned.append(type(model))
        return model
    return fused


_warned: list[type] = []  # models already logged as unfusable: one line per process


@contextlib.contextmanager
def _full_precision():
    """TF32 off for CUDA convolutions and matmuls inside the block (a no-op on CPU)."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        cudnn = torch.backends.cudnn
        with cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        ):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul

import numpy as np
import pytest
import torch
from torch import nn

from saltseg.inference.fusion import fuse_conv_bn
from saltseg.inference.predict import predict_probs
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime

# the cpu profile's net: a timm resnet10t (deep stem, avg-pool downsamples) and ConvBnRelu blocks
CPU_NET = {
    "encoder_name": "resnet10t",
    "pretrained": "none",
    "encoder_args": {"channels": [8, 8, 16, 16], "stem_width": 8},
    "decoder_channels": [16, 8, 8, 8, 8],
    "pad_to": 128,
    "deep_supervision": True,
    "attention": "scse",
    "hypercolumn": True,
    "hypercolumn_channels": 8,
}


def _trained_norms(model: nn.Module) -> nn.Module:
    """Give every batch norm running statistics and affine weights far from their defaults."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-1.0, 1.0)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 3.0)
    return model.eval()


def _plain_norms(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


def test_fused_net_has_the_same_outputs_and_leaves_the_original_alone():
    model = _trained_norms(build_model("unet", 101, **CPU_NET))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 1, 101, 101)
    fused = fuse_conv_bn(model, x[:2])
    assert fused is not model
    # every norm after a conv is gone (the encoder's stem included); the hypercolumn's norm
    # follows a sum of resized maps, not a conv, and stays
    assert _plain_norms(model) > 20 and _plain_norms(fused) == 1
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class _NormFirst(nn.Module):
    """A conv registered before its norm, but the norm runs first: not foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_a_norm_that_does_not_follow_its_conv_is_left_alone():
    model = _trained_norms(_NormFirst())
    x = torch.rand(2, 2, 9, 9)
    assert fuse_conv_bn(model, x) is model


def test_an_unfusable_model_is_logged_once_per_process(caplog, monkeypatch):
    """Validation checks every snapshot each epoch: the log gets one line, not one per call."""
    import saltseg.inference.fusion as fusion

    monkeypatch.setattr(fusion, "_warned", [])
    x = torch.rand(2, 2, 9, 9)
    for _ in range(3):
        model = _trained_norms(_NormFirst())
        # a conv followed by its norm in registration order, run the other way round:
        assert fuse_conv_bn(model, x) is model
    lines = [r for r in caplog.records if "fusion changed the outputs" in r.message]
    assert len(lines) == 1


@pytest.mark.slow  # fast: test_fused_net_has_the_same_outputs_and_leaves_the_original_alone
def test_prediction_is_unchanged_by_fusion(monkeypatch):
    import saltseg.inference.predict as predict

    model = _trained_norms(build_model("unet", 101, **CPU_NET))
    images = np.random.default_rng(1).integers(0, 256, (5, 101, 101), dtype=np.uint8)
    runtime = resolve_runtime("cpu", amp="false")
    fused = predict_probs(model, images, runtime, 2, ("none", "hflip"))
    monkeypatch.setattr(predict, "fuse_conv_bn", lambda model, probe: model.eval())
    plain = predict_probs(model, images, runtime, 2, ("none", "hflip"))
    np.testing.assert_allclose(fused, plain, atol=1e-5)
    assert 0.0 < plain.min() and plain.max() < 1.0 and plain.std() > 1e-3


@pytest.mark.parametrize("n", [0, 1])
def test_prediction_of_few_tiles(n):
    model = build_model("unet", 101, **CPU_NET)
    images = np.zeros((n, 101, 101), dtype=np.uint8)
    out = predict_probs(model, images, resolve_runtime("cpu", amp="false"), 4)
    assert out.shape == (n, 101, 101)

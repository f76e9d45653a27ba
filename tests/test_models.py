import pytest
import torch

from saltseg.errors import InputError
from saltseg.models import build_model
from saltseg.models.decoders import UnetDecoder
from saltseg.models.encoders import TimmEncoder
from saltseg.models.geometry import Geometry

ENCODERS = ["resnet10t", "resnet18", "mobilenetv3_small_050"]


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name):
    encoder = TimmEncoder(name, in_channels=1, pretrained="none")
    features = encoder(torch.randn(2, 1, 128, 128))
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert [128 // f.shape[-1] for f in features] == encoder.reductions
    assert encoder.reductions == sorted(encoder.reductions)
    assert encoder.output_stride == max(encoder.reductions) == 32


def test_unknown_encoder_and_architecture():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'"):
        TimmEncoder("resnet_nope")
    with pytest.raises(ValueError, match="expected one of unet"):
        build_model("segformer", 101)


def test_pretrained_path_must_exist():
    with pytest.raises(InputError, match="pretrained: expected 'none', 'imagenet' or a path"):
        TimmEncoder("resnet10t", pretrained="/no/such/weights.pth")


def test_pretrained_local_file_is_loaded(tmp_path):
    import timm

    source = timm.create_model("resnet10t", pretrained=False, in_chans=3)
    torch.nn.init.constant_(source.conv1[0].weight, 0.5)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmEncoder("resnet10t", in_channels=1, pretrained=str(path))
    # timm sums the RGB filters into one input channel: 3 * 0.5
    weight = encoder.model.conv1[0].weight
    assert torch.allclose(weight, torch.full_like(weight, 1.5))


def test_pad_geometry_is_an_exact_round_trip():
    geometry = Geometry(tile=101, resize_to=101, pad_to=128)
    x = torch.randn(3, 2, 101, 101)
    padded = geometry.to_network(x)
    assert padded.shape == (3, 2, 128, 128)
    assert torch.equal(geometry.to_tile(padded), x)
    # reflect padding mirrors the border without repeating it
    assert torch.equal(padded[..., 13, 12], padded[..., 13, 14])


def test_resize_pad_geometry_shapes():
    geometry = Geometry(tile=101, resize_to=192, pad_to=224)
    x = torch.ones(1, 1, 101, 101)
    y = geometry.to_network(x)
    assert y.shape[-1] == 224
    back = geometry.to_tile(y)
    assert back.shape[-1] == 101 and torch.allclose(back, x)


def test_pad_to_must_fit_the_stride():
    with pytest.raises(ValueError, match=r"multiple of the encoder stride 32, got 120 \(try 128\)"):
        Geometry(101, 101, 120)


@pytest.mark.parametrize("name", ENCODERS)
def test_unet_maps_tiles_to_tile_logits(name):
    model = build_model("unet", 101, encoder_name=name, decoder_channels=[32, 16, 16, 8, 8])
    out = model(torch.randn(2, 1, 101, 101))
    assert out.shape == (2, 1, 101, 101)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_decoder_channel_count_is_checked():
    with pytest.raises(ValueError, match="expected 5 values for this encoder, got 2"):
        UnetDecoder([64, 64, 128, 256, 512], [2, 4, 8, 16, 32], [16, 8])

import pytest
import timm
import torch
import torch.nn.functional as F
from tiny import TINY_MODEL

from saltseg.errors import InputError
from saltseg.losses import build_loss
from saltseg.models import ARCHITECTURES, build_model
from saltseg.models.blocks import FPA, GAU, GCN, SCSE, Hypercolumn
from saltseg.models.centers import build_center
from saltseg.models.decoders import GauDecoder, UnetDecoder
from saltseg.models.encoders import TimmEncoder
from saltseg.models.geometry import Geometry
from saltseg.models.inputs import InputChannels
from saltseg.models.summary import model_summary

ENCODERS = ["resnet10t", "resnet18", "mobilenetv3_small_050"]


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name):
    encoder = TimmEncoder(name, in_channels=1, pretrained="none")
    features = encoder(torch.randn(2, 1, 128, 128))
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert [128 // f.shape[-1] for f in features] == encoder.reductions
    assert encoder.reductions == sorted(encoder.reductions)
    assert encoder.output_stride == max(encoder.reductions) == 32


@pytest.mark.parametrize("name", ["resnet10t", "resnet18"])
def test_stride1_stem_keeps_128_resolution(name):
    encoder = TimmEncoder(name, stem="stride1")
    features = encoder(torch.randn(1, 1, 128, 128))
    assert [f.shape[-1] for f in features] == [128, 128, 64, 32, 16]
    assert encoder.reductions == [1, 1, 2, 4, 8] == encoder.model.feature_info.reduction()
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert encoder.output_stride == 8


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "efficientnet_b0"])
def test_stride1_stem_refuses_encoders_without_a_resnet_stem(name):
    with pytest.raises(ValueError, match=f"needs a max-pool after the stem.*{name} has none"):
        TimmEncoder(name, stem="stride1")
    with pytest.raises(ValueError, match="stem: expected one of default, stride1"):
        TimmEncoder("resnet10t", stem="stride4")


def test_encoder_args_set_the_widths():
    half = {"channels": [32, 64, 128, 256], "stem_width": 16}
    encoder = TimmEncoder("resnet10t", encoder_args=half)
    features = encoder(torch.randn(1, 1, 128, 128))
    # resnet10t's deep-tiered stem ends at 2 * stem_width channels, then the four stages
    assert encoder.out_channels == [f.shape[1] for f in features] == [32, 32, 64, 128, 256]
    assert encoder.model.conv1[0].out_channels == 3 * 16 // 4  # timm's tiered stem: 3/4 width
    model = build_model(
        "unet", 101, encoder_name="resnet10t", decoder_channels=[8] * 5, encoder_args=half
    )
    assert model(torch.randn(2, 1, 101, 101)).shape == (2, 1, 101, 101)


def test_stride1_stem_keeps_pretrained_weights(tmp_path):
    source = timm.create_model("resnet18", pretrained=False, in_chans=3)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmEncoder("resnet18", pretrained=str(path), stem="stride1").model
    # the 7x7 filters (RGB summed into one channel by timm) are cropped to their 3x3 centre
    expected = source.conv1.weight.sum(1, keepdim=True)[..., 2:5, 2:5]
    assert encoder.conv1.stride == (1, 1)
    assert torch.allclose(encoder.conv1.weight, expected, atol=1e-6)
    assert torch.equal(encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert isinstance(encoder.maxpool, torch.nn.Identity)


def test_unknown_encoder_and_architecture():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'"):
        TimmEncoder("resnet_nope")
    names = ", ".join(sorted(ARCHITECTURES))
    with pytest.raises(ValueError, match=f"expected one of {names}, got 'segformer'"):
        build_model("segformer", 101)
    with pytest.raises(ValueError, match="unknown keyword.*decoder_width for pad128.*encoder_name"):
        build_model("pad128", 101, decoder_width=3)
    with pytest.raises(ValueError, match="center: expected one of none, fpa, gcn"):
        build_center("aspp", 8, 8)
    with pytest.raises(ValueError, match="decoder: expected one of unet, gau"):
        build_model("unet", 101, decoder="fpn")
    with pytest.raises(ValueError, match="upsample: expected one of nearest, bilinear, transpose"):
        build_model("unet", 101, upsample="pixelshuffle")


def test_pretrained_path_must_exist():
    with pytest.raises(InputError, match="pretrained: expected 'none', 'imagenet' or a path"):
        TimmEncoder("resnet10t", pretrained="/no/such/weights.pth")


def test_pretrained_local_file_is_loaded(tmp_path):
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


@pytest.mark.parametrize("name", ["mobilenetv3_small_050"])  # ResNets: see PresetTester
def test_unet_maps_tiles_to_tile_logits(name):
    model = build_model("unet", 101, encoder_name=name, decoder_channels=[32, 16, 16, 8, 8])
    out = model(torch.randn(2, 1, 101, 101))
    assert out.shape == (2, 1, 101, 101)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_input_channels_by_hand():
    """A 3x2 tile with rows 0, 3, 6 (mean 3): centred -3, 0, 3, summed down -3, -3, 0, over 3
    rows -1, -1, 0; depth 0, 0.5, 1 on every column."""
    x = torch.tensor([0.0, 3.0, 6.0]).view(1, 1, 3, 1).expand(1, 1, 3, 2)
    out = InputChannels(["cumsum", "depth"])(x)
    assert out.shape == (1, 3, 3, 2)
    assert torch.equal(out[0, 0], x[0, 0])
    assert out[0, 1].tolist() == [[-1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]]
    assert out[0, 2].tolist() == [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]
    assert torch.equal(InputChannels(["cumsum"])(x.flip(-1)), InputChannels(["cumsum"])(x))
    with pytest.raises(InputError, match="input_features"):
        InputChannels(["gradient"])


def test_input_features_widen_the_encoder_input():
    model = build_model("unet", 101, **TINY_MODEL, input_features=["cumsum", "depth"])
    assert model.encoder.in_channels == 3
    assert model(torch.randn(2, 1, 101, 101)).shape == (2, 1, 101, 101)
    plain = build_model("unet", 101, **TINY_MODEL)
    # the inputs add no weights: a model's checkpoint keys are those of the plain model
    assert set(plain.state_dict()) == set(model.state_dict())
    with pytest.raises(InputError, match="in_channels 1"):
        build_model("unet", 101, **TINY_MODEL, in_channels=3, input_features=["depth"])


def test_decoder_channel_count_is_checked():
    with pytest.raises(ValueError, match="expected 5 values for this encoder, got 2"):
        UnetDecoder([64, 64, 128, 256, 512], [2, 4, 8, 16, 32], [16, 8])
    with pytest.raises(ValueError, match="expected 4 values for this encoder, got 5"):
        GauDecoder([64, 64, 128, 256, 512], [8] * 5)


def test_blocks_keep_their_shapes():
    x = torch.randn(2, 8, 12, 10)
    assert SCSE(8)(x).shape == x.shape
    assert GCN(8, 4, 5)(x).shape == (2, 4, 12, 10)
    with pytest.raises(ValueError, match="odd size"):
        GCN(8, 4, 4)
    for size in [(16, 16), (7, 5), (1, 1)]:  # the pyramid pools twice, with ceil
        assert FPA(8, 6)(torch.randn(2, 8, *size)).shape == (2, 6, *size)
    skip = torch.randn(2, 3, 24, 20)
    assert GAU(8, 3, 5)(x, skip).shape == (2, 5, 24, 20)
    stages = [torch.randn(2, 4, 6, 6), torch.randn(2, 2, 12, 12)]
    assert Hypercolumn([4, 2], 3)(stages, (24, 24)).shape == (2, 3, 24, 24)


def test_hypercolumn_sums_projected_stages_top_down():
    block = Hypercolumn([4, 3, 2], 5).eval()
    stages = [torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8, 8), torch.randn(2, 2, 16, 16)]
    p4, p8, p16 = (conv(s) for conv, s in zip(block.project, stages))

    def up(t, side):
        return F.interpolate(t, size=(side, side), mode="bilinear")

    top_down = up(up(up(p4, 8) + p8, 16) + p16, 32)
    assert torch.allclose(block(stages, (32, 32)), torch.relu(block.bn(top_down)), atol=1e-5)
    # on the shallowest stage the 1x1 projection equals mixing the concatenation
    weight = torch.cat([conv.weight for conv in block.project], dim=1)
    only_last = [torch.zeros_like(stages[0]), torch.zeros_like(stages[1]), stages[2]]
    mixed = F.conv2d(torch.cat([up(s, 16) for s in only_last], dim=1), weight)
    assert torch.allclose(block(only_last, (16, 16)), torch.relu(block.bn(mixed)), atol=1e-5)


def test_scse_is_a_sum_of_channel_and_spatial_gates():
    block = SCSE(4, reduction=2)
    x = torch.randn(1, 4, 3, 3)
    expected = x * block.cse(x) + x * block.sse(x)
    assert torch.allclose(block(x), expected)
    assert block.sse(x).shape == (1, 1, 3, 3) and block.cse(x).shape == (1, 4, 1, 1)


class PresetTester:
    """The shared checks every preset's test class runs on a small-encoder build.

    Subclasses set ``arch``, ``kwargs`` (small widths) and the expected ``resize_to``/``pad_to``.
    """

    arch: str
    kwargs: dict
    resize_to: int
    pad_to: int
    deep_supervision = False
    batch = 2  # eval batch; the training step runs one tile (BatchNorm still sees h x w values)

    @pytest.fixture(scope="class")
    def model(self):
        torch.manual_seed(0)
        return build_model(self.arch, 101, **self.kwargs)

    def test_eval_returns_tile_logits(self, model):
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(self.batch, 1, 101, 101))
        assert isinstance(out, torch.Tensor) and out.shape == (self.batch, 1, 101, 101)

    def test_train_output_and_gradients(self, model):
        model.train()
        out = model(torch.randn(1, 1, 101, 101))
        if self.deep_supervision:
            assert set(out) == {"logits", "side", "empty_logit"}
            assert out["logits"].shape == (1, 1, 101, 101)
            assert out["side"] and all(s.shape == (1, 1, 101, 101) for s in out["side"])
            assert out["empty_logit"].shape == (1, 1)
            loss_name = "deep_supervision"
        else:
            assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 101, 101)
            loss_name = "lovasz"
        target = torch.zeros(1, 1, 101, 101)
        target[0, :, 30:70, 20:60] = 1
        model.zero_grad()
        build_loss(loss_name)(out, target).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing

    def test_geometry(self, model):
        geometry = model.geometry
        assert (geometry.resize_to, geometry.pad_to) == (self.resize_to, self.pad_to)
        assert geometry.pad_to % model.encoder.output_stride == 0
        x = torch.rand(1, 1, 101, 101)
        net = geometry.to_network(x)
        assert net.shape[-1] == self.pad_to
        back = geometry.to_tile(net)
        if self.resize_to == 101:
            assert torch.equal(back, x)
        else:  # bilinear there and back: a smooth image comes back, aligned
            ramp = torch.linspace(0, 1, 101).expand(1, 1, 101, 101)
            ramp_back = geometry.to_tile(geometry.to_network(ramp))
            assert back.shape == x.shape
            assert (ramp_back - ramp)[..., 2:-2].abs().max() < 1e-2


class TestUnet(PresetTester):
    arch, resize_to, pad_to = "unet", 101, 128
    kwargs = {"encoder_name": "resnet10t", "decoder_channels": [32, 16, 16, 8, 8]}


class TestBesResnext50(PresetTester):
    arch, resize_to, pad_to = "bes_resnext50", 192, 224
    kwargs = {"encoder_name": "resnet10t", "decoder_channels": [32, 16, 16, 8, 8]}


class TestPhalanxResnet34(PresetTester):
    arch, resize_to, pad_to = "phalanx_resnet34", 202, 256
    kwargs = {
        "encoder_name": "resnet10t",
        "decoder_channels": [16, 16, 8, 8, 8],
        "hypercolumn_channels": 8,
    }


class TestPad128(PresetTester):
    arch, resize_to, pad_to = "pad128", 101, 128
    kwargs = {
        "encoder_name": "resnet10t",
        "decoder_channels": [16, 16, 8, 8],
        "center_channels": 32,
        "hypercolumn_channels": 8,
    }


class TestResize128(PresetTester):
    arch, resize_to, pad_to = "resize128", 128, 128
    deep_supervision = True
    kwargs = {
        "encoder_name": "resnet10t",
        "decoder_channels": [16, 16, 8, 8],
        "center_channels": 32,
        "hypercolumn_channels": 8,
        "gcn_kernel": 5,
    }


def test_every_preset_has_a_tester():
    tested = {cls.arch for cls in PresetTester.__subclasses__()}
    assert tested == set(ARCHITECTURES)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bes_resnext50", "phalanx_resnet34", "pad128", "resize128"])
def test_full_size_preset_builds_and_runs(arch):
    model = build_model(arch, 101).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 101, 101)).shape == (1, 1, 101, 101)
    assert sum(p.numel() for p in model.parameters()) > 20_000_000


def test_model_summary_describes_a_small_build():
    summary = model_summary(
        "pad128",
        batch=1,
        repeats=1,
        encoder_name="resnet10t",
        decoder_channels=[8, 8, 8, 8],
        center_channels=16,
        hypercolumn_channels=8,
    )
    assert summary["preset"] == "pad128" and summary["encoder_name"] == "resnet10t"
    assert (summary["resize_to"], summary["pad_to"], summary["output_stride"]) == (101, 128, 8)
    assert summary["input_shape"] == summary["output_shape"] == [1, 1, 101, 101]
    assert summary["parameters"] > 0 and summary["forward_ms"] > 0

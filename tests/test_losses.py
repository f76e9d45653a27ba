"""Every loss against hand-computed numbers or a plain reference written from its definition."""

import math

import pytest
import torch
import torch.nn.functional as F

from saltseg.losses import LOSSES, build_loss
from saltseg.losses.deep_supervision import WEIGHTS
from saltseg.losses.lovasz import lovasz_hinge


def jaccard_loss(labels: list[int], wrong: list[bool]) -> float:
    """1 - IoU of the prediction that gets exactly the pixels in ``wrong`` wrong."""
    pred = [bool(y) != w for y, w in zip(labels, wrong)]
    inter = sum(p and y for p, y in zip(pred, labels))
    union = sum(p or bool(y) for p, y in zip(pred, labels))
    return 0.0 if union == 0 else 1 - inter / union


def lovasz_reference(logits: list[float], labels: list[int], hinge) -> float:
    """The Lovasz extension from its definition: sort the hinge errors, weight each by the
    Jaccard loss it adds when its pixel joins the set of mistakes."""
    errors = [1 - x * (2 * y - 1) for x, y in zip(logits, labels)]
    wrong, previous, loss = [False] * len(errors), 0.0, 0.0
    for i in sorted(range(len(errors)), key=lambda i: -errors[i]):
        wrong[i] = True
        current = jaccard_loss(labels, wrong)
        loss += hinge(errors[i]) * (current - previous)
        previous = current
    return loss


def relu(e: float) -> float:
    return max(e, 0.0)


def elu_plus_one(e: float) -> float:
    return (e if e > 0 else math.expm1(e)) + 1


def reference_batch(logits: torch.Tensor, target: torch.Tensor, hinge) -> float:
    per_image = [
        lovasz_reference(x.flatten().tolist(), y.flatten().int().tolist(), hinge)
        for x, y in zip(logits, target)
    ]
    return sum(per_image) / len(per_image)


def tiny_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 1, 3, 4, generator=generator) * 2
    target = (torch.rand(3, 1, 3, 4, generator=generator) > 0.5).float()
    target[2] = 0  # an empty tile
    return logits, target


def test_bce_dice_by_hand():
    logits, target = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    target[0, 0, :2, :2] = 1
    # p = 0.5 everywhere: BCE = ln 2; Dice = (2 * 2 + 1) / (8 + 4 + 1)
    expected = math.log(2) + 1 - 5 / 13
    assert build_loss("bce_dice")(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert build_loss("dice")(logits, target).item() == pytest.approx(8 / 13, rel=1e-6)
    perfect = (target * 2 - 1) * 30
    assert build_loss("bce_dice")(perfect, target).item() == pytest.approx(0, abs=1e-6)


def test_dice_of_an_empty_tile_predicted_empty_is_zero():
    empty = torch.zeros(2, 1, 5, 5)
    assert build_loss("dice")(torch.full_like(empty, -30), empty).item() == pytest.approx(0)


def test_lovasz_of_one_pixel_by_hand():
    logits, target = torch.tensor([[[[0.25]]]]), torch.ones(1, 1, 1, 1)
    assert lovasz_hinge(logits, target).item() == pytest.approx(0.75)
    assert lovasz_hinge(-logits, 1 - target).item() == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_matches_the_reference(seed):
    logits, target = tiny_batch(seed)
    assert build_loss("lovasz")(logits, target).item() == pytest.approx(
        reference_batch(logits, target, relu), rel=1e-5
    )
    assert build_loss("lovasz_elu")(logits, target).item() == pytest.approx(
        reference_batch(logits, target, elu_plus_one), rel=1e-5
    )
    symmetric = (
        reference_batch(logits, target, relu) + reference_batch(-logits, 1 - target, relu)
    ) / 2
    assert build_loss("lovasz_symmetric")(logits, target).item() == pytest.approx(
        symmetric, rel=1e-5
    )


def test_lovasz_is_zero_beyond_the_margin_and_differentiable():
    _, target = tiny_batch()
    confident = (target * 2 - 1) * 1.5
    assert build_loss("lovasz")(confident, target).item() == pytest.approx(0)
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    build_loss("lovasz_elu")(logits, (torch.rand(2, 1, 6, 6) > 0.5).float()).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def ds_output(seed: int = 0, sides: int = 3):
    generator = torch.Generator().manual_seed(seed)
    logits, target = tiny_batch(seed)
    side = [torch.randn(3, 1, 3, 4, generator=generator) for _ in range(sides)]
    empty_logit = torch.randn(3, 1, generator=generator)
    return {"logits": logits, "side": side, "empty_logit": empty_logit}, target


def test_deep_supervision_is_the_weighted_sum_of_its_parts():
    output, target = ds_output()
    assert (WEIGHTS["empty"], WEIGHTS["side"], WEIGHTS["fused"]) == (0.05, 0.1, 1.0)
    is_empty = torch.tensor([0.0, 0.0, 1.0])  # tile 2 of tiny_batch is empty
    assert target.flatten(1).amax(1).tolist() == [1.0, 1.0, 0.0]
    empty = F.binary_cross_entropy_with_logits(output["empty_logit"].flatten(), is_empty)
    side = sum(reference_batch(s[:2], target[:2], relu) for s in output["side"])
    fused = reference_batch(output["logits"], target, relu)
    expected = 0.05 * empty.item() + 0.1 * side + 1.0 * fused
    assert build_loss("deep_supervision")(output, target).item() == pytest.approx(expected, 1e-5)
    side_elu = sum(reference_batch(s[:2], target[:2], elu_plus_one) for s in output["side"])
    fused_elu = reference_batch(output["logits"], target, elu_plus_one)
    expected_elu = 0.05 * empty.item() + 0.1 * side_elu + fused_elu
    assert build_loss("deep_supervision_elu")(output, target).item() == pytest.approx(
        expected_elu, 1e-5
    )


def test_deep_supervision_side_outputs_ignore_empty_tiles():
    output, target = ds_output()
    loss = build_loss("deep_supervision")
    before = loss(output, target)
    for side in output["side"]:
        side[2] = torch.randn(1, 3, 4) * 10  # tile 2 is empty
    assert loss(output, target).item() == pytest.approx(before.item())
    empty_target = torch.zeros_like(target)
    fused = lovasz_hinge(output["logits"], empty_target).item()
    cls = F.binary_cross_entropy_with_logits(output["empty_logit"].flatten(), torch.ones(3))
    assert loss(output, empty_target).item() == pytest.approx(fused + 0.05 * cls.item(), 1e-5)


def test_deep_supervision_trains_every_head():
    output, target = ds_output()
    for tensor in [output["logits"], *output["side"], output["empty_logit"]]:
        tensor.requires_grad_(True)
    build_loss("deep_supervision")(output, target).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in output["side"])
    assert output["empty_logit"].grad.abs().sum() > 0


def test_side_weight_adds_the_phase_loss_of_each_side_output_on_salt_tiles():
    output, target = ds_output()
    salt = target[:2]  # tile 2 of tiny_batch is empty: no side term for it
    bce_dice = build_loss("bce_dice")
    side = sum(bce_dice(s[:2], salt).item() for s in output["side"])
    is_empty = torch.tensor([0.0, 0.0, 1.0])
    empty = F.binary_cross_entropy_with_logits(output["empty_logit"].flatten(), is_empty).item()
    fused = bce_dice(output["logits"], target).item()
    loss = build_loss("bce_dice", empty_weight=0.05, side_weight=0.2)
    assert loss(output, target).item() == pytest.approx(fused + 0.2 * side + 0.05 * empty, 1e-5)
    # the resize128 loss is the same composition on the Lovasz hinge
    lovasz = build_loss("lovasz", empty_weight=0.05, side_weight=0.1)
    assert lovasz(output, target).item() == pytest.approx(
        build_loss("deep_supervision")(output, target).item(), 1e-5
    )
    assert loss(output["logits"], target).item() == pytest.approx(fused, 1e-6)  # eval mode


def test_side_weight_needs_side_outputs_and_a_plain_loss():
    output, target = ds_output()
    del output["side"]
    with pytest.raises(ValueError, match="side_weight: the model has no side outputs"):
        build_loss("bce_dice", side_weight=0.1)(output, target)
    with pytest.raises(ValueError, match="side_weight: deep_supervision already weighs"):
        build_loss("deep_supervision", side_weight=0.1)


def test_plain_losses_read_the_logits_of_a_dict_and_ds_reads_a_tensor():
    output, target = ds_output()
    for name in ["bce_dice", "dice", "lovasz", "lovasz_elu", "lovasz_symmetric"]:
        loss = build_loss(name)
        assert loss(output, target).item() == pytest.approx(loss(output["logits"], target).item())
    ds = build_loss("deep_supervision")(output["logits"], target).item()
    assert ds == pytest.approx(lovasz_hinge(output["logits"], target).item())


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(ValueError, match=f"expected one of {', '.join(sorted(LOSSES))}"):
        build_loss("focal")
    with pytest.raises(ValueError, match="activation: expected one of relu, elu"):
        lovasz_hinge(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), activation="gelu")


@pytest.mark.parametrize("name", ["bce_dice", "dice", "lovasz", "lovasz_elu", "lovasz_symmetric"])
def test_per_image_losses_average_to_the_batch_loss_and_score_each_image_alone(name):
    """What side outputs weigh by tile: each image's loss is the loss of that image alone."""
    output, target = ds_output(seed=3)
    logits, loss = output["logits"], LOSSES[name]
    per_image = loss(logits, target, per_image=True)
    assert per_image.shape == (3,)
    assert per_image.mean().item() == pytest.approx(loss(logits, target).item(), 1e-6)
    for i in range(3):
        alone = loss(logits[i : i + 1], target[i : i + 1]).item()
        assert per_image[i].item() == pytest.approx(alone, 1e-6)


def test_side_outputs_of_empty_tiles_get_no_gradient():
    output, target = ds_output()
    for side in output["side"]:
        side.requires_grad_(True)
    build_loss("bce_dice", side_weight=0.3)(output, target).backward()
    for side in output["side"]:
        assert side.grad[2].abs().sum() == 0 and side.grad[:2].abs().sum() > 0

"""CUDA-graph training steps: the capture logic on CPU through a stand-in graph, the real capture
on CUDA (skipped without one)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from saltseg.errors import InputError
from saltseg.losses import build_loss
from saltseg.runtime.device import Runtime, resolve_runtime
from saltseg.training import loop
from saltseg.training.graphed import GraphedStep, capture_blocker
from saltseg.training.optim import build_optimizer, build_schedule, hold_lr_in_tensors

ADAM = {"optimizer": "adam", "lr": 0.01, "schedule": "cosine", "epochs": 4, "min_lr": 0.001}
CPU = Runtime(torch.device("cpu"), None, False)


class ReplayGraph:
    """A stand-in for ``torch.cuda.CUDAGraph``: "capture" keeps the function without running
    it, "replay" runs it again and writes its loss into the captured output tensor, as a real
    replay refreshes it in place. A step that read anything but the static buffers would train
    on the wrong batch and fail the comparison with the eager run."""

    instances: list[ReplayGraph] = []

    def __init__(self) -> None:
        self.fn, self.out, self.replays = None, None, 0
        ReplayGraph.instances.append(self)

    def capture(self, fn):
        self.fn, self.out = fn, torch.zeros(())
        return self.out

    def replay(self) -> None:
        self.replays += 1
        self.out.copy_(self.fn())


class Net(nn.Module):
    """Conv, batch norm and a side output: the parts a captured step must keep consistent."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head, self.side = nn.Conv2d(4, 1, 1), nn.Conv2d(4, 1, 1)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return {"logits": self.head(h), "side": [self.side(h)]}


def batches(n: int, size: int = 4, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.rand(size, 1, 12, 12, generator=generator)
        y = (torch.rand(size, 1, 12, 12, generator=generator) > 0.6).float()
        y[0] = 0  # an empty tile: its side output is not scored
        yield x, y


def train(graph: bool, epochs: int = 2, n: int = 7, short_last: bool = True):
    """Losses per step and final weights of ``epochs`` epochs with a cosine schedule."""
    model = Net()
    optimizer = build_optimizer(model, ADAM, graphed=True)
    schedule = build_schedule(optimizer, ADAM)
    loss_fn = build_loss("bce_dice", side_weight=0.3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step = partial(loop._step_on, model, loss_fn, optimizer, scaler, CPU)
    if graph:
        step = GraphedStep(step, warmup=2, graph=ReplayGraph)
    losses = []
    for epoch in range(epochs):
        data = list(batches(n, seed=epoch))
        if short_last:
            data[-1] = tuple(t[:3] for t in data[-1])  # another shape: runs eagerly
        for x, y in data:
            losses.append(float(step(x, y)))
        schedule.step()
    return losses, model.state_dict(), step


def test_graphed_steps_train_exactly_as_eager_steps():
    ReplayGraph.instances.clear()
    eager_losses, eager_weights, _ = train(graph=False)
    losses, weights, step = train(graph=True)
    assert losses == pytest.approx(eager_losses, rel=1e-6)
    for name, value in eager_weights.items():
        assert torch.allclose(weights[name].float(), value.float(), atol=1e-6), name
    (graph,) = ReplayGraph.instances  # captured once, at the third call
    # 14 steps: 2 warm-up, 1 capture (replayed once), 2 short batches eager, 9 replays
    assert step.captured and step.calls == 14 and graph.replays == 1 + 9


def test_the_schedule_reaches_a_captured_step_through_the_lr_tensor():
    """The graph reads the lr from the tensor's memory: the schedule must write into it."""
    model = Net()
    optimizer = build_optimizer(model, ADAM, graphed=True)
    schedule = build_schedule(optimizer, ADAM)
    held = optimizer.param_groups[0]["lr"]
    assert isinstance(held, torch.Tensor) and float(held) == pytest.approx(0.01)
    schedule.step()
    schedule.step()  # epoch 2 of a 4-epoch cosine from 0.01 to 0.001: the middle, 0.0055
    assert optimizer.param_groups[0]["lr"] is held
    assert float(held) == pytest.approx(0.0055, rel=1e-5)


def test_a_resumed_optimizer_holds_its_lr_in_a_tensor_again():
    model = Net()
    saved = build_optimizer(model, ADAM).state_dict()  # an eager run's checkpoint: a float
    optimizer = build_optimizer(model, ADAM, graphed=True)
    optimizer.load_state_dict(saved)
    assert isinstance(optimizer.param_groups[0]["lr"], float)
    hold_lr_in_tensors(optimizer)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)


class Scaler:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def is_enabled(self) -> bool:
        return self.enabled


@pytest.mark.parametrize(
    "runtime, phase, scaler, reason",
    [
        (Runtime(torch.device("cuda"), torch.bfloat16, True), ADAM, False, None),
        (Runtime(torch.device("cuda"), None, True), {"optimizer": "adamw"}, False, None),
        (CPU, ADAM, False, "device cpu is not CUDA"),
        (Runtime(torch.device("cuda"), torch.float16, True), ADAM, True, "gradient scaler"),
        (Runtime(torch.device("cuda"), None, True), {"optimizer": "sgd"}, False, "sgd"),
        (Runtime(torch.device("cuda"), None, True, compile=True), ADAM, False, "compile"),
    ],
)
def test_which_phases_are_captured(runtime, phase, scaler, reason):
    blocker = capture_blocker(phase, runtime, Scaler(scaler))
    assert blocker is None if reason is None else reason in blocker


def test_cuda_graphs_are_asked_for_on_cuda_only():
    assert not resolve_runtime("cpu").cuda_graphs  # auto: off on CPU
    with pytest.raises(InputError, match="cuda_graphs.*needs a CUDA device"):
        resolve_runtime("cpu", cuda_graphs="true")
    with pytest.raises(InputError, match="cuda_graphs.*expected auto, true or false"):
        resolve_runtime("cpu", cuda_graphs="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_cuda_graph_trains_as_eager_steps_within_bf16_noise():
    runtime = resolve_runtime("cuda", amp="true")
    losses = {}
    for graphed in (False, True):
        model = Net().cuda().to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, ADAM, graphed=True)
        scaler = runtime.grad_scaler()
        assert capture_blocker(ADAM, runtime, scaler) is None
        step = partial(loop._step_on, model, build_loss("lovasz_elu"), optimizer, scaler, runtime)
        if graphed:
            step = GraphedStep(step)
        losses[graphed] = [float(step(runtime.to(x), y.cuda())) for x, y in batches(8)]
        assert not graphed or step.captured
    assert losses[True] == pytest.approx(losses[False], rel=2e-2, abs=1e-3)


def test_a_phase_that_cannot_be_captured_says_why_once_and_trains_eagerly(tmp_path, caplog):
    from test_training import params, run_fit

    caplog.set_level("INFO", logger="saltseg.training.loop")
    asked = Runtime(torch.device("cpu"), None, False, cuda_graphs=True)  # as if on CUDA
    history = run_fit(params(epochs=2), tmp_path, runtime=asked)["history"]
    assert len(history) == 2 and history[1]["train_loss"] < history[0]["train_loss"]
    lines = [r.message for r in caplog.records if "CUDA graphs" in r.message]
    assert lines == [
        "phase 0: training steps run eagerly, not as CUDA graphs: device cpu is not CUDA"
    ]

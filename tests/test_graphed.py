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
from saltseg.training.optim import build_optimizer, build_schedule, load_optimizer_state

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


def train(graph: bool, epochs: int = 2, n: int = 7, short_last: bool = True, make=ReplayGraph):
    """Losses per step and final weights of ``epochs`` epochs with a cosine schedule."""
    model = Net()
    optimizer = build_optimizer(model, ADAM, graphed=True)
    schedule = build_schedule(optimizer, ADAM)
    loss_fn = build_loss("bce_dice", side_weight=0.3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step = partial(loop._step_on, model, loss_fn, optimizer, scaler, CPU)
    if graph:
        step = GraphedStep(step, optimizer, "phase 0", warmup=2, graph=make)
    losses = []
    for epoch in range(epochs):
        data = list(batches(n, seed=epoch))
        if short_last:
            data[-1] = tuple(t[:3] for t in data[-1])  # another shape: runs eagerly
        for x, y in data:
            losses.append(float(step(x, y)))
        schedule.step()
        if graph:
            step.follow_schedule()
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


def test_the_graphed_optimizer_is_capturable_fresh_and_after_an_eager_checkpoint():
    """torch refuses to capture ``step()`` unless every group is capturable; an eager run's
    checkpoint brings back ``capturable: False``, a float lr and CPU step counters."""
    model = Net()
    eager = build_optimizer(model, ADAM)
    out = model(torch.rand(2, 1, 12, 12))
    (out["logits"].sum() + out["side"][0].sum()).backward()
    eager.step()  # state with a step counter on the CPU
    optimizer = build_optimizer(model, ADAM, graphed=True)
    assert all(group["capturable"] and group["fused"] for group in optimizer.param_groups)
    load_optimizer_state(optimizer, eager.state_dict(), graphed=True)
    for group in optimizer.param_groups:
        assert group["capturable"] and group["fused"]
        assert isinstance(group["lr"], torch.Tensor) and float(group["lr"]) == pytest.approx(0.01)
        for param in group["params"]:
            step = optimizer.state[param]["step"]
            assert step.device == param.device and step.dtype == torch.float32
            assert float(step) == 1.0  # the count is kept


def test_a_graphed_checkpoint_resumes_eagerly_with_a_float_lr():
    model = Net()
    graphed = build_optimizer(model, ADAM, graphed=True)
    optimizer = build_optimizer(model, ADAM)
    load_optimizer_state(optimizer, graphed.state_dict(), graphed=False)
    (group,) = optimizer.param_groups
    assert group["lr"] == pytest.approx(0.01) and isinstance(group["lr"], float)
    assert not group["capturable"] and not group["fused"]


class Capturing:
    """What torch's optimiser health check reads while a CUDA graph capture is on."""

    def is_capturing(self) -> bool:
        return True


@pytest.mark.parametrize("resumed", [False, True])
def test_torchs_capture_health_check_passes_the_graphed_optimizer(monkeypatch, resumed):
    """The real ``Optimizer.step`` path with a capture simulated: torch raises "param_groups'
    capturable is False" for a non-capturable optimiser (the first fault of issue 44)."""
    model = Net()
    model(torch.rand(2, 1, 12, 12))["logits"].sum().backward()
    optimizer = build_optimizer(model, ADAM, graphed=True)
    if resumed:
        load_optimizer_state(optimizer, build_optimizer(model, ADAM).state_dict(), graphed=True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda **_: torch.device("cuda"))
    monkeypatch.setattr(torch.accelerator, "current_stream", lambda *_: Capturing())
    with pytest.raises(RuntimeError, match="capturable is False"):
        torch.optim.Adam(model.parameters(), lr=0.01, fused=True).step()  # the check is live
    optimizer.step()


class FailingGraph(ReplayGraph):
    """A capture that raises as a CUDA capture error would (at capture or at the first replay)."""

    fail_at = "capture"

    def capture(self, fn):
        if self.fail_at == "capture":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")
        return super().capture(fn)

    def replay(self) -> None:
        if self.fail_at == "replay":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        super().replay()


@pytest.mark.parametrize("fail_at", ["capture", "replay"])
def test_a_failed_capture_goes_on_eagerly_from_the_same_step(caplog, monkeypatch, fail_at):
    monkeypatch.setattr(FailingGraph, "fail_at", fail_at)
    caplog.set_level("INFO", logger="saltseg.training.graphed")
    eager_losses, eager_weights, _ = train(graph=False)
    losses, weights, step = train(graph=True, make=FailingGraph)
    assert losses == pytest.approx(eager_losses, rel=1e-6)  # nothing lost, nothing twice
    for name, value in eager_weights.items():
        assert torch.allclose(weights[name].float(), value.float(), atol=1e-6), name
    assert not step.captured and step.calls == 14
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("phase 0: capturing the step failed: RuntimeError: CUDA error")
    assert "training goes on eagerly" in line and "runtime.cuda_graphs: false" in line


def test_a_schedule_that_replaces_the_lr_tensor_still_reaches_the_graph(caplog):
    """A schedule that assigns a new lr (older torch did) would leave the graph reading the
    old tensor: the value is copied into it, once said."""
    caplog.set_level("INFO", logger="saltseg.training.graphed")
    model = Net()
    optimizer = build_optimizer(model, ADAM, graphed=True)
    loss_fn, scaler = build_loss("bce_dice"), torch.amp.GradScaler("cpu", enabled=False)
    step = partial(loop._step_on, model, loss_fn, optimizer, scaler, CPU)
    step = GraphedStep(step, optimizer, "phase 2", warmup=1, graph=ReplayGraph)
    for x, y in batches(2):
        step(x, y)
    held = optimizer.param_groups[0]["lr"]
    optimizer.param_groups[0]["lr"] = 0.002  # what `group["lr"] = new_lr` did
    step.follow_schedule()
    assert optimizer.param_groups[0]["lr"] is held and float(held) == pytest.approx(0.002)
    optimizer.param_groups[0]["lr"] = torch.tensor(0.001)
    step.follow_schedule()
    assert optimizer.param_groups[0]["lr"] is held and float(held) == pytest.approx(0.001)
    assert step.captured
    assert [r.getMessage() for r in caplog.records] == [
        "phase 2: the schedule replaced the graph's lr tensor; copied back"
    ]
    optimizer.param_groups[0]["lr"] = "0.001?"  # nothing a graph can read: eager from here
    step.follow_schedule()
    assert not step.captured and "cannot reach the graph" in caplog.records[-1].getMessage()


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
            step = GraphedStep(step, optimizer)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_capture_that_fails_goes_on_eagerly_on_cuda(caplog):
    """A step that waits on the device cannot be captured: CUDA refuses the sync inside the
    capture, and training goes on eagerly in the same process, every loss finite."""
    caplog.set_level("INFO", logger="saltseg.training.graphed")
    runtime = resolve_runtime("cuda", amp="true")
    model = Net().cuda().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, ADAM, graphed=True)
    scaler = runtime.grad_scaler()
    inner = partial(loop._step_on, model, build_loss("bce_dice"), optimizer, scaler, runtime)

    def waits(x, y):
        loss = inner(x, y)
        float(loss)  # a host sync: not capturable
        return loss

    step = GraphedStep(waits, optimizer, "phase 0")
    losses = [float(step(runtime.to(x.cuda()), y.cuda())) for x, y in batches(6)]
    assert not step.captured and step.eager_because.startswith("capturing the step failed")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len([r for r in caplog.records if "goes on eagerly" in r.getMessage()]) == 1

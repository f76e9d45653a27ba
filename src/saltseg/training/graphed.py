"""Training steps captured as CUDA graphs: forward, loss, backward and the optimiser step of a
fixed-shape batch, replayed with one launch instead of hundreds.

A small U-Net's step at 101-128 px spends its time launching kernels from Python, not running
them (issue 35: 23 % GPU busy at batch 32). :class:`GraphedStep` runs the first
:data:`WARMUP_STEPS` steps eagerly on a side stream (cuDNN picks its algorithms, the optimiser
makes its state), captures the next one into a graph fed from static batch buffers, and from
then on copies each batch into those buffers and replays it. A capturable step must never wait
on the device: the losses keep fixed shapes (:func:`~saltseg.losses.deep_supervision.side_loss`),
the optimiser is a fused Adam(W) whose learning rate lives in a device tensor that the schedules
update in place (:func:`~saltseg.training.optim.hold_lr_in_tensors`), and the loop reads the
loss back only every few steps.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch

from saltseg.runtime.device import Runtime
from saltseg.training.optim import make_graph_safe

Tensor = torch.Tensor
log = logging.getLogger(__name__)

#: optimisers with a fused, graph-safe step that reads its lr from a tensor
GRAPHED_OPTIMIZERS = ("adam", "adamw")
#: eager steps before the capture, as PyTorch's whole-network capture example does
WARMUP_STEPS = 3


def capture_blocker(
    phase: dict[str, Any], runtime: Runtime, scaler: torch.amp.GradScaler
) -> str | None:
    """Why ``phase``'s steps cannot be captured on ``runtime`` (None: they can).

    EMA (updated after each replay) and ``crop`` (windows of one fixed size) do not block.
    """
    if runtime.device.type != "cuda":
        return f"device {runtime.device} is not CUDA"
    if runtime.compile:
        return "torch.compile is on"
    if scaler.is_enabled():
        return "fp16's gradient scaler waits on the device every step (use bf16 or fp32)"
    if phase["optimizer"] not in GRAPHED_OPTIMIZERS:
        return f"optimizer {phase['optimizer']} has no graph-safe form here (adam, adamw have)"
    return None


class Graph(Protocol):
    """What :class:`GraphedStep` needs of a graph: record a function once, replay it."""

    def capture(self, fn: Callable[[], Tensor]) -> Tensor:
        """Record ``fn`` without running it; return its output, which each replay refreshes."""

    def replay(self) -> None: ...


class CudaGraph:
    """A :class:`Graph` backed by ``torch.cuda.CUDAGraph``."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn: Callable[[], Tensor]) -> Tensor:
        with torch.cuda.graph(self.graph):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


class GraphedStep:
    """``step(x, y) -> loss`` that captures ``step`` after ``warmup`` eager calls and replays it.

    Batches of another shape than the captured one (a short last batch) run ``step`` eagerly.
    The returned loss is valid until the next call (a replay overwrites it in place).

    A capture can never end a run: if capturing or the first replay raises, one log line says
    why, the graph is dropped and the same batch, and every later one, runs eagerly from the
    same weights (a capture records the step without running it). The lr the graph reads is
    the tensor each param group held at the capture; :meth:`follow_schedule` keeps it so.

    Args:
        step: one eager optimiser step that never waits on the device
            (:func:`saltseg.training.loop.train_step` with its batch left open).
        optimizer: the graph-safe optimiser ``step`` updates
            (:func:`~saltseg.training.optim.make_graph_safe`).
        name: what the log lines call this step (``phase 0``).
        warmup: eager calls before the capture.
        graph: makes the graph (:class:`CudaGraph`; tests pass a stand-in).
    """

    def __init__(
        self,
        step: Callable[[Tensor, Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        name: str = "training",
        warmup: int = WARMUP_STEPS,
        graph: Callable[[], Graph] = CudaGraph,
    ) -> None:
        self.step, self.optimizer, self.name = step, optimizer, name
        self.warmup, self.make_graph = warmup, graph
        self.calls, self.graph = 0, None
        self.static: tuple[Tensor, Tensor] | None = None
        self.loss: Tensor | None = None
        self.lrs: list[Tensor] = []  # the lr tensors the graph reads
        self.eager_because: str | None = None  # set once a capture failed
        self.rebound = False  # whether follow_schedule had to copy an lr back

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        if self.graph is None and self.eager_because is None and self.calls > self.warmup:
            try:
                return self._capture(x, y)
            except RuntimeError as error:  # torch's CUDA errors are RuntimeErrors
                self.fall_back(f"capturing the step failed: {_first_line(error)}")
        if self.graph is None:
            with _side_stream(x.device), _eager_capturable():
                return self.step(x, y)
        static_x, static_y = self.static
        if x.shape != static_x.shape or y.shape != static_y.shape:
            with _eager_capturable():
                return self.step(x, y)
        static_x.copy_(x)
        static_y.copy_(y)
        self.graph.replay()
        return self.loss

    def _capture(self, x: Tensor, y: Tensor) -> Tensor:
        """Record the step on this batch's copy, then replay it once (the capture ran nothing)."""
        make_graph_safe(self.optimizer)  # a float lr would be baked into the graph
        self.lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.static = (x.clone(), y.clone())
        self.graph = self.make_graph()
        self.loss = self.graph.capture(lambda: self.step(*self.static))
        self.graph.replay()
        return self.loss

    def fall_back(self, reason: str) -> None:
        """Drop the graph: every later step runs eagerly (logged once, with ``reason``)."""
        self.graph, self.static, self.loss, self.lrs = None, None, None, []
        self.eager_because = reason
        log.warning(
            "%s: %s; training goes on eagerly from the same step "
            "(set runtime.cuda_graphs: false to skip the capture)",
            self.name,
            reason,
        )

    def follow_schedule(self) -> None:
        """Call after each schedule step: a schedule that replaced an lr tensor instead of
        writing into it (torch before 2.2's in-place updates, or a custom one) has its value
        copied into the tensor the graph reads, which goes back into the group; a value that
        cannot be copied ends the capture."""
        if self.graph is None:
            return
        for group, held in zip(self.optimizer.param_groups, self.lrs):
            if group["lr"] is held:
                continue
            try:
                held.fill_(float(group["lr"]))
            except (TypeError, ValueError, RuntimeError) as error:
                self.fall_back(f"the schedule's lr {group['lr']!r} cannot reach the graph: {error}")
                return
            group["lr"] = held
            if not self.rebound:
                log.info("%s: the schedule replaced the graph's lr tensor; copied back", self.name)
            self.rebound = True


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


@contextlib.contextmanager
def _eager_capturable():
    """An eager step of a capturable optimiser is correct; torch warns that it may be slower."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This instance was constructed with capturable")
        yield


@contextlib.contextmanager
def _side_stream(device: torch.device):
    """Run the block on a fresh CUDA stream that joins the current one on both ends (warm-up
    steps before a capture must not run on the default stream); a no-op elsewhere."""
    if device.type != "cuda":
        yield
        return
    stream, current = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        yield
    current.wait_stream(stream)

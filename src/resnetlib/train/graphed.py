"""The whole training step (forward, loss, backward, optimizer step, running sums) as one CUDA
graph, captured after :data:`WARMUP_STEPS` eager iterations; the optimizer state it saves is the
eager one, so runs resume either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["GRAPHS_BY_DEFAULT", "WARMUP_STEPS", "GraphedTraining", "choose"]

GRAPHS_BY_DEFAULT = False
"""Whether ``Recipe.cuda_graphs=None`` graphs the step on CUDA (off until shown faster)."""

WARMUP_STEPS = 3
"""Eager iterations before the capture (the PyTorch CUDA-graph documentation's advice)."""

_REPLAY_DEVICES = frozenset({"cuda"})  # tests add "cpu" to run the step uncaptured


def choose(trainer: Trainer, *, own_optimizer: bool) -> tuple[GraphedTraining | None, str]:
    """The graphed step if the recipe asks for one and it can apply, and a note of why not."""
    asked = trainer.recipe.cuda_graphs
    default = GRAPHS_BY_DEFAULT and trainer.device.type == "cuda"
    if not (asked is True or (asked is None and default)):
        return None, ""
    reason = obstacle(trainer, own_optimizer=own_optimizer)
    if reason:
        return None, f"cuda graphs: off {reason}; training eagerly"
    return GraphedTraining(trainer), ""


def obstacle(trainer: Trainer, *, own_optimizer: bool) -> str:
    """Why the step of ``trainer`` cannot be one graph ("" when it can)."""
    device = trainer.device
    if device.type not in _REPLAY_DEVICES:
        return f"on {device.type} (they need a CUDA device)"
    if trainer.process.world_size > 1:
        return "under torchrun (DDP all-reduces gradients from its hooks)"
    if trainer.ema is not None:
        return "with an EMA of the weights (--ema)"
    if trainer.amp_dtype == torch.float16:
        return "with fp16 autocast (loss scaling skips steps on the host; use bf16)"
    if trainer.recipe.compile:
        return "with --compile (torch.compile has its own: mode='reduce-overhead')"
    if not own_optimizer or type(trainer.optimizer) is not torch.optim.SGD:
        return "with your own optimizer (the graph needs the recipe's SGD, its lr on the device)"
    return ""


class GraphedTraining:
    """One run's captured step, in place of the trainer's eager one: it turns the optimizer's
    groups to fused SGD with device lr tensors and adds to the trainer's sums in place."""

    def __init__(self, trainer: Trainer) -> None:
        self.device = trainer.device
        self.capture = self.device.type == "cuda"
        self.model = trainer.model
        self.optimizer = optimizer = trainer.optimizer
        self.label_smoothing = trainer.recipe.label_smoothing
        self.amp_dtype = trainer.amp_dtype
        groups = optimizer.param_groups
        self.scales = [float(group.get("lr_scale", 1.0)) for group in groups]
        self.lr_values = [float(group["lr"]) for group in groups]
        self.lrs = [
            torch.tensor(v, dtype=torch.float32, device=self.device) for v in self.lr_values
        ]
        self.eager_keys = [(group.get("foreach"), group.get("fused")) for group in groups]
        self._to_device_lr()
        optimizer.register_state_dict_post_hook(self._eager_state)
        optimizer.register_load_state_dict_post_hook(lambda _: self._to_device_lr())
        self.lr: float | None = None  # the schedule's value the tensors hold
        self.sums = trainer.sums
        self.last_wrong = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = torch.zeros((), dtype=torch.float64, device=self.device)
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None  # the batch's tensors
        self.graph: Any = None  # torch.cuda.CUDAGraph once captured
        self.eager_steps = 0
        self.replays = 0
        self.side: Any = None  # the warm-up's side stream
        if self.capture:
            self.side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]

    # -- the optimizer ---------------------------------------------------------------------

    def _to_device_lr(self) -> None:
        """Each group's lr as its device tensor (a loaded state's float lr is kept)."""
        for i, group in enumerate(self.optimizer.param_groups):
            value = group["lr"]
            if not isinstance(value, torch.Tensor):
                self.lr_values[i] = float(value)
                self.lrs[i].fill_(float(value))
            group["lr"] = self.lrs[i]
            group["fused"], group["foreach"] = True, False

    def _eager_state(self, _: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
        """The optimizer's state as eager training saves it (no sync: the host's lr)."""
        for group, value, (foreach, fused) in zip(
            state["param_groups"], self.lr_values, self.eager_keys, strict=True
        ):
            group["lr"], group["foreach"], group["fused"] = value, foreach, fused
        return state

    def set_lr(self, lr: float) -> None:
        """Write the schedule's ``lr`` (times each group's ``lr_scale``) to the device."""
        if lr == self.lr:
            return
        self.lr = lr
        for i, (tensor, scale) in enumerate(zip(self.lrs, self.scales, strict=True)):
            self.lr_values[i] = lr * scale
            tensor.fill_(lr * scale)

    # -- the step --------------------------------------------------------------------------

    def _body(self) -> None:
        assert self.static is not None
        x, y = self.static
        enabled = self.amp_dtype is not None  # the autocast cache cannot live across replays
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=enabled, cache_enabled=False
        ):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        self.optimizer.step()
        wrong = (logits.detach().argmax(1) != y).sum().double()
        self.sums += torch.stack([loss.detach().double() * self.count, wrong, self.count])
        self.last_wrong.copy_(wrong)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration: the batch's wrong count and size, device tensors the next overwrites."""
        self.set_lr(lr)
        if self.static is None:
            self.static = (torch.empty_like(x), torch.empty_like(y))
            self.count.fill_(y.numel())
        static_x, static_y = self.static
        if x.shape != static_x.shape or y.shape != static_y.shape:
            raise RuntimeError(
                f"cuda graphs need one batch shape; got {tuple(x.shape)} after "
                f"{tuple(static_x.shape)} (the loader must drop the last partial batch)"
            )
        static_x.copy_(x)
        static_y.copy_(y)
        if self.graph is not None:
            self.graph.replay()
            self.replays += 1
        elif not self.capture:  # tests: the same step, uncaptured
            self._body()
        elif self.eager_steps < WARMUP_STEPS:
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                self._body()
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            self.eager_steps += 1
        else:
            graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self._body()
            self.graph = graph
            graph.replay()  # capture records the step; the replay runs it
            self.replays += 1
        return self.last_wrong, self.count

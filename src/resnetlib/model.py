"""The ResNet module: stem -> stages -> global average pool -> fully connected."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import ResidualBlock
from .spec import ResNetSpec
from .stems import Stem

__all__ = ["ResNet"]


class ResNet(nn.Module):
    """A residual (or plain) network. Build it with :func:`resnetlib.build` or a factory.

    Module names follow torchvision: the stem's children (``conv1``, ``bn1``, ...), then
    ``layer1`` .. ``layerN`` (``nn.Sequential`` of blocks), ``avgpool`` and ``fc``.
    ``final`` (pre-activation nets: a norm and an activation after the last block) is
    registered as ``norm`` and belongs to the features.
    ``model.spec`` is the :class:`~resnetlib.ResNetSpec` it was built from.
    """

    def __init__(
        self,
        *,
        stem: Stem,
        stages: Sequence[nn.Sequential],
        num_classes: int,
        spec: ResNetSpec,
        final: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("ResNet needs at least one stage")
        reserved = {f"layer{i}" for i in range(1, len(stages) + 1)} | {"avgpool", "fc", "norm"}
        for name, child in stem.named_children():
            if name in reserved:
                raise ValueError(f"stem child name {name!r} clashes with the model's own {name!r}")
            self.add_module(name, child)
        self.stem_names: tuple[str, ...] = tuple(name for name, _ in stem.named_children())
        for index, stage in enumerate(stages, start=1):
            self.add_module(f"layer{index}", stage)
        self.stage_names: tuple[str, ...] = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        last_block = stages[-1][-1]
        if not isinstance(last_block, ResidualBlock):
            raise TypeError(f"stages must hold ResidualBlocks; got {type(last_block).__name__}")
        self.num_features: int = last_block.out_channels
        self.final_names: tuple[str, ...] = ()
        if final is not None:
            self.norm = final
            self.final_names = ("norm",)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.spec = spec
        self.default_input_size: tuple[int, int, int] = (
            stem.in_channels,
            stem.default_image_size,
            stem.default_image_size,
        )
        self._feature_names = self.stem_names + self.stage_names + self.final_names

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stem_names:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages (and ``norm`` if any): the last feature map, before pooling."""
        for name in self._feature_names:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool a feature map and classify it; ``pre_logits=True`` stops before ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def blocks(self) -> list[ResidualBlock]:
        """Every residual block, stage by stage."""
        return [
            block
            for name in self.stage_names
            for block in self.get_submodule(name).children()
            if isinstance(block, ResidualBlock)
        ]

    @torch.no_grad()
    def init_weights(self, zero_init_residual: bool = False) -> None:
        """He normal (fan_out) convolutions, unit-weight zero-bias norms, as in the paper.

        The classifier keeps PyTorch's default ``nn.Linear`` init, as torchvision's does.
        Each block's own :meth:`~resnetlib.ResidualBlock.init_weights` runs next; then, with
        ``zero_init_residual``, every block's
        :meth:`~resnetlib.ResidualBlock.zero_init_last` zeroes its branch (the last norm's
        weight, or a pre-activation block's last convolution), so each block starts as
        its shortcut.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks():
            block.init_weights()
            if zero_init_residual:
                block.zero_init_last()

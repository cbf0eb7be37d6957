"""A re-implementation of mmpretrain's ResNet classifiers' structure and names, for tests.

Written from open-mmlab/mmpretrain's ``mmpretrain/models/backbones/resnet.py`` (commit
df9eaeedf1f4a7aa39473dfee3e588bf8106c76e), ``backbones/resnet_cifar.py``,
``backbones/resnext.py``, ``heads/linear_head.py`` (9fe593e3), ``necks/gap.py``,
``utils/data_preprocessor.py`` (0979e785) and open-mmlab/mmcv's
``mmcv/cnn/bricks/conv_module.py`` (013f784b) and ``norm.py`` (056372fb); plain torch
modules, no mmcv. What the state dict depends on:

- ``ImageClassifier`` children ``data_preprocessor`` (its mean/std buffers are
  non-persistent), ``backbone``, ``neck`` (``GlobalAveragePooling``: no parameters) and
  ``head`` (``LinearClsHead``: ``fc``).
- ``build_norm_layer(dict(type="BN"), c, postfix=i)`` names a BatchNorm ``bn{i}``; in a
  ``ConvModule`` (postfix ``""``) it is ``bn``, after ``conv`` (bias-free when normed)
  and before ``activate``.
- ``ResNet``: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..; with ``deep_stem``
  a ``stem`` Sequential of three ``ConvModule`` s (widths c/2, c/2, c; the first with
  stride 2) instead of ``conv1``/``bn1``/``relu``. ``ResNet_CIFAR``: a 3x3/1 ``conv1``,
  ``bn1``, ``relu``, no max-pool.
- Blocks: ``conv1``, ``bn1``, ``conv2``, ``bn2`` (``conv3``, ``bn3``), ``relu``,
  ``downsample``; style ``"pytorch"`` strides the 3x3, ``"caffe"`` the first 1x1. ResNeXt's
  inner width is ``groups * width_per_group * planes // base_channels`` (``groups != 1``).
- ``ResLayer``'s ``downsample`` (where stride or width changes): with ``avg_down`` *and*
  stride != 1, ``AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)``, then
  a 1x1 conv with stride 1 and a norm (indices 0, 1, 2); otherwise a 1x1 conv with the
  stride and a norm (indices 0, 1), so a stride-1 projection of ResNetV1d has no pool.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCH = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


class ConvModule(nn.Module):
    """mmcv's ConvModule with ``norm_cfg=dict(type="BN")`` and ReLU: conv, bn, activate."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activate(self.bn(self.conv(x)))
        return out


class BasicBlock(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, stride: int, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        downsample: nn.Module | None,
        *,
        style: str,
        groups: int,
        width_per_group: int,
    ) -> None:
        super().__init__()
        mid = out_channels // 4
        if groups != 1:  # ResNeXt's rule, base_channels 64
            mid = groups * width_per_group * mid // 64
        stride1, stride2 = (1, stride) if style == "pytorch" else (stride, 1)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, stride1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride2, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        result: torch.Tensor = self.relu(out + identity)
        return result


def res_layer(
    block: str,
    num_blocks: int,
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    avg_down: bool,
    options: dict[str, Any],
) -> nn.Sequential:
    """mmpretrain's ``ResLayer``: the first block strides and carries the ``downsample``."""
    downsample: nn.Sequential | None = None
    if stride != 1 or in_channels != out_channels:
        layers: list[nn.Module] = []
        conv_stride = stride
        if avg_down and stride != 1:
            conv_stride = 1
            layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
        layers.append(nn.Conv2d(in_channels, out_channels, 1, conv_stride, bias=False))
        layers.append(nn.BatchNorm2d(out_channels))
        downsample = nn.Sequential(*layers)
    blocks: list[nn.Module] = []
    for index in range(num_blocks):
        args = (in_channels if index == 0 else out_channels, out_channels)
        block_stride, block_down = (stride, downsample) if index == 0 else (1, None)
        if block == "basic":
            blocks.append(BasicBlock(*args, block_stride, block_down))
        else:
            blocks.append(Bottleneck(*args, block_stride, block_down, **options))
    return nn.Sequential(*blocks)


class Backbone(nn.Module):
    """``ResNet``, ``ResNetV1c`` (``deep_stem``), ``ResNetV1d`` (``deep_stem``, ``avg_down``),
    ``ResNet_CIFAR`` (``cifar``) and ``ResNeXt`` (``groups``); returns the last stage."""

    def __init__(
        self,
        depth: int,
        *,
        cifar: bool = False,
        deep_stem: bool = False,
        avg_down: bool = False,
        style: str = "pytorch",
        groups: int = 1,
        width_per_group: int = 4,
    ) -> None:
        super().__init__()
        block, counts = ARCH[depth]
        expansion = 1 if block == "basic" else 4
        stem = 64
        self.deep_stem = deep_stem
        self.cifar = cifar
        if deep_stem:
            self.stem = nn.Sequential(
                ConvModule(3, stem // 2, 2), ConvModule(stem // 2, stem // 2, 1),
                ConvModule(stem // 2, stem, 1),
            )  # fmt: skip
        else:
            kernel, stride = (3, 1) if cifar else (7, 2)
            self.conv1 = nn.Conv2d(3, stem, kernel, stride, kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.relu = nn.ReLU()
        if not cifar:
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        options = {"style": style, "groups": groups, "width_per_group": width_per_group}
        in_channels, out_channels = stem, 64 * expansion
        for index, count in enumerate(counts):
            layer = res_layer(
                block,
                count,
                in_channels,
                out_channels,
                1 if index == 0 else 2,
                avg_down=avg_down,
                options=options,
            )
            self.add_module(f"layer{index + 1}", layer)
            in_channels, out_channels = out_channels, out_channels * 2
        self.num_stages = len(counts)
        self.feat_dim = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        if not self.cifar:
            x = self.maxpool(x)
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return x


class GlobalAveragePooling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.gap(x)
        return pooled.view(x.size(0), -1)


class LinearClsHead(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x)
        return out


class DataPreprocessor(nn.Module):
    """``ClsDataPreprocessor``: mean and std are non-persistent buffers, so not saved."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([123.675, 116.28, 103.53]), False)
        self.register_buffer("std", torch.tensor([58.395, 57.12, 57.375]), False)


class ImageClassifier(nn.Module):
    """Backbone, ``GlobalAveragePooling`` neck, ``LinearClsHead``; logits from images that
    are already normalized (the preprocessor is left out of ``forward``)."""

    def __init__(self, depth: int, *, num_classes: int = 1000, **backbone: Any) -> None:
        super().__init__()
        self.data_preprocessor = DataPreprocessor()
        self.backbone = Backbone(depth, **backbone)
        self.neck = GlobalAveragePooling()
        self.head = LinearClsHead(num_classes, self.backbone.feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.neck(self.backbone(x)))
        return out


def released_checkpoint(model: nn.Module) -> dict[str, Any]:
    """A checkpoint as mmengine saves one: ``meta`` and the weights under ``state_dict``."""
    return {"meta": {"epoch": 100, "mmpretrain_version": "1.0.0"}, "state_dict": model.state_dict()}

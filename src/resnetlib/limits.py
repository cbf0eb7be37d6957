"""Size limits every layer checks against (specs, blocks, loaders, commands).

Far above any published ResNet (the deepest, ResNet-1202, has 200 blocks a stage; the widest
stage is 512 channels wide, 2048 out), low enough that a typo or a hostile file is refused
with a clear error before anything is allocated, not by the allocator. They live in the
bottom layer so that the parts (``resnetlib.nn``) need not import the spec to use them;
``resnetlib.core.spec`` re-exports them.
"""

from __future__ import annotations

__all__ = [
    "MAX_BLOCKS",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_IMAGE_SIDE",
    "MAX_STAGES",
    "MAX_STRIDE",
]

MAX_BLOCKS = 10_000
"""Most blocks in one stage, and in the whole network."""
MAX_STAGES = 64
"""Most stages in a network."""
MAX_CHANNELS = 65_536
"""Largest stage width, stem width and number of input channels."""
MAX_CLASSES = 10_000_000
"""Largest number of classes."""
MAX_STRIDE = 1024
"""Largest stride and dilation of a stage."""
MAX_IMAGE_SIDE = 8192
"""Largest height and width of an input image: ``summary --input``, ``export --input``,
``--image-size`` and :func:`~resnetlib.count_flops` refuse more (ImageNet's is 224,
detection inputs about 1,333; a 8192 x 8192 RGB float image alone is 805 MB)."""

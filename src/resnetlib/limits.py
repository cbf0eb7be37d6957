"""Size limits every layer checks against: far above any published ResNet, low enough that a
typo or a hostile file is refused before anything is allocated (``core.spec`` re-exports them)."""

from __future__ import annotations

__all__ = [
    "MAX_ASPECT",
    "MAX_BLOCKS",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_DOWNSCALE",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_LABEL_NAME",
    "MAX_NORM_VALUE",
    "MAX_ONNX_BYTES",
    "MAX_PICKLE_BYTES",
    "MAX_STAGES",
    "MAX_STRIDE",
    "MAX_TEXT_BYTES",
    "MIN_CROP_PCT",
    "MIN_STD",
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
"""Largest height and width of an input image (an 8192 x 8192 RGB float image is 805 MB)."""

# -- files: what the one reader and writer (resnetlib.files) accept ------------------------

MAX_JSON_BYTES = 1 << 20
"""Largest JSON file resnetlib reads: ``run.json``, ``spec.json``, a recipe (a few KB each)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in a JSON file or entry (a spec nests 5 deep)."""
MAX_TEXT_BYTES = 64 << 20
"""Largest text file: class and annotation lists, ``metrics.csv`` (the largest known, 2.6 MB)."""
MAX_PICKLE_BYTES = 1 << 30
"""Largest CIFAR python pickle (CIFAR-100's ``train`` is 155 MB)."""
MAX_ONNX_BYTES = 2 << 30
"""Largest ONNX file ``evaluate`` and ``predict`` run: protobuf's own 2 GiB bound."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Most pixels (read from the header before decoding) of an image no target size bounds."""
MAX_DOWNSCALE = 32
"""How many times larger per side than its target an image may be before it is refused."""
MAX_ASPECT = 64
"""Largest ratio of an image's longer side to its shorter (a resized strip would explode)."""

# -- data configurations (resnetlib.core.data_config.check_data_config) --------------------

MIN_STD = 1e-3
"""Smallest per-channel std a data configuration may divide by (real data: 0.05 to 0.5)."""
MAX_NORM_VALUE = 1e3
"""Largest absolute mean and largest std of a data configuration, on inputs in [0, 1]."""
MIN_CROP_PCT = 0.05
"""Smallest ``crop_pct``: images are first resized to ``input_size / crop_pct``."""
MAX_LABEL_NAME = 1000
"""Longest class name in a data configuration's ``label_names``, in characters."""

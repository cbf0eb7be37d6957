"""Training recipes as plain, validated, JSON-serializable data: :class:`Recipe`, the paper's
(:data:`PAPER_CIFAR`, :func:`paper_recipe`) and recipes for the digits, TinyImageNet and
fine-tuning."""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..files import parse_json
from ..validate import check_int, check_keys, is_real
from .pipeline import Augment

if TYPE_CHECKING:
    from ..core.spec import ResNetSpec

__all__ = [
    "DIGITS",
    "FINETUNE",
    "MAX_BATCH_SIZE",
    "MAX_EPOCHS",
    "MAX_ITERATIONS",
    "PAPER_CIFAR",
    "PAPER_CIFAR_WARMUP",
    "TINYIMAGENET",
    "TINYIMAGENET_MODEL",
    "Recipe",
    "paper_recipe",
    "recipe_for",
    "scaling_note",
]

MAX_ITERATIONS = 10**9  # far above any real run; a typo or a crafted file is refused up front
"""Most iterations a recipe may ask for (also bounds milestones and the warm-up)."""
MAX_EPOCHS = 10**6
MAX_BATCH_SIZE = 2**20

OPTIMIZERS = ("sgd",)
SCHEDULES = ("step", "cosine")
AUTOCAST = (None, "bf16", "fp16")


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"Recipe.{name} must be {allowed}; got {value!r}")


_BOUND = "resnetlib.train.recipe's bound"
# Field checks by kind; fields in _OPTIONAL may also be None.
_NUMBERS = {  # a float in [0, high)
    **dict.fromkeys(("lr", "weight_decay", "warmup_lr"), math.inf),
    **dict.fromkeys(("momentum", "gamma", "warmup_error", "label_smoothing", "ema_decay"), 1.0),
}
_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "autocast": AUTOCAST}
_BOOLS = ("nesterov", "channels_last", "compile", "no_decay_norm_bias", "cuda_graphs")
_INTS: dict[str, tuple[int, int | None]] = {  # an int in [low, high]
    "batch_size": (1, MAX_BATCH_SIZE),
    "iterations": (1, MAX_ITERATIONS),
    "epochs": (1, MAX_EPOCHS),
    "warmup_max_iterations": (0, MAX_ITERATIONS),
    "val_size": (0, None),
}
_OPTIONAL = ("warmup_lr", "ema_decay", "channels_last", "cuda_graphs", "iterations", "epochs")


@dataclass(frozen=True)
class Recipe:
    """How to train: every field has the paper's CIFAR value unless it says otherwise.

    Exactly one of ``iterations`` and ``epochs`` is the length; ``milestones`` count in that
    unit and scale with an overridden length (:meth:`resolved`); ``schedule="cosine"`` anneals
    ``lr`` to 0 and ignores them. ``warmup_lr`` is the lr until a batch's error is below
    ``warmup_error`` or ``warmup_max_iterations`` pass. ``val_size``: the most images held out
    (:meth:`val_images`). ``channels_last=None`` is on for a CPU run only. ``cuda_graphs=True``
    replays the step as one CUDA graph (where it cannot, trains eagerly and logs why); ``None``
    decides by device and is left out of :meth:`to_dict`.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    batch_size: int = 128
    iterations: int | None = 64_000
    epochs: int | None = None
    schedule: str = "step"
    milestones: tuple[int, ...] = (32_000, 48_000)
    gamma: float = 0.1
    warmup_lr: float | None = None
    warmup_error: float = 0.8
    warmup_max_iterations: int = 2_000
    augment: Augment | None = field(default_factory=Augment)
    val_size: int = 5_000
    autocast: str | None = None
    channels_last: bool | None = None
    compile: bool = False
    label_smoothing: float = 0.0
    no_decay_norm_bias: bool = False
    ema_decay: float | None = None
    cuda_graphs: bool | None = None

    def __post_init__(self) -> None:
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError(
                "Recipe needs exactly one of iterations and epochs; "
                f"got iterations={self.iterations!r}, epochs={self.epochs!r}"
            )
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed or isinstance(value, bool):
                raise _fail(name, value, f"one of {list(allowed)}")
        for name, high in _NUMBERS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not (is_real(value) and math.isfinite(value) and 0.0 <= value < high):
                raise _fail(name, value, f"a number in [0.0, {high})")
            object.__setattr__(self, name, float(value))
        for name in _BOOLS:
            value = getattr(self, name)
            if not isinstance(value, bool) and not (value is None and name in _OPTIONAL):
                raise _fail(name, value, "a bool")
        for name, (least, most) in _INTS.items():
            if getattr(self, name) is not None or name not in _OPTIONAL:
                check_int(f"Recipe.{name}", getattr(self, name), least, most, bound=_BOUND)
        if self.lr == 0.0:
            raise _fail("lr", self.lr, "a number > 0")
        if self.nesterov and self.momentum == 0.0:
            raise _fail("nesterov", self.nesterov, "False when momentum is 0")
        milestones = self.milestones
        milestones = tuple(milestones) if isinstance(milestones, list) else milestones
        if not isinstance(milestones, tuple):
            raise _fail("milestones", milestones, "a tuple of increasing ints >= 1")
        for i, value in enumerate(milestones):
            check_int(f"Recipe.milestones[{i}]", value, 1, MAX_ITERATIONS, bound=_BOUND)
        if list(milestones) != sorted(set(milestones)):
            raise _fail("milestones", milestones, "strictly increasing")
        object.__setattr__(self, "milestones", milestones)
        if self.augment is not None and not isinstance(self.augment, Augment):
            raise _fail("augment", self.augment, "an Augment or None")

    # -- length and schedule -------------------------------------------------------------

    def resolved(
        self, batches_per_epoch: int, *, iterations: int | None = None, epochs: int | None = None
    ) -> Recipe:
        """The plan a run follows: this recipe in iterations for ``batches_per_epoch`` batches an
        epoch, without ``cuda_graphs``. ``iterations`` or ``epochs`` (at most one) replace its
        length, the milestones and warm-up cap scaling with it. A plan resolves to itself."""
        check_int("Recipe.batches_per_epoch", batches_per_epoch, 1, MAX_ITERATIONS, bound=_BOUND)
        if iterations is not None and epochs is not None:
            raise ValueError("give iterations or epochs, not both")
        per_unit = 1 if self.iterations is not None else batches_per_epoch
        own_total = (self.iterations or self.epochs or 0) * per_unit
        if iterations is not None:
            total = check_int("Recipe.iterations", iterations, 1, MAX_ITERATIONS, bound=_BOUND)
        elif epochs is not None:
            check_int("Recipe.epochs", epochs, 1, MAX_EPOCHS, bound=_BOUND)
            total = epochs * batches_per_epoch
        else:
            total = own_total
        if total > MAX_ITERATIONS:
            raise ValueError(
                f"the run would take {total:,} iterations ({batches_per_epoch} a epoch), more "
                f"than resnetlib.train.recipe.MAX_ITERATIONS ({MAX_ITERATIONS:,})"
            )
        milestones = sorted(
            {round(m * per_unit * total / own_total) for m in self.milestones} - {0}
        )
        warmup = self.warmup_max_iterations
        if total != own_total:
            warmup = max(1, round(warmup * total / own_total)) if warmup else 0
        return replace(
            self,
            iterations=total,
            epochs=None,
            milestones=tuple(milestones),
            warmup_max_iterations=warmup,
            cuda_graphs=None,
        )

    def val_images(self, train_images: int) -> int:
        """Images to hold out for validation from ``train_images`` by default: a tenth, at most
        ``val_size``, leaving at least one batch to train on (else 0)."""
        check_int("train_images", train_images, 0)
        tenth = min(self.val_size, train_images // 10)
        return max(0, min(tenth, train_images - self.batch_size))

    def lr_at(self, iteration: int, warmed_up: bool = True) -> float:
        """The learning rate of (0-based) ``iteration`` of an iteration-counted recipe
        (``warmup_lr`` while a warm-up is on and not ``warmed_up``)."""
        if self.iterations is None:
            raise ValueError(
                "lr_at needs a recipe counted in iterations; call recipe.resolved(...) first"
            )
        if self.warmup_lr is not None and not warmed_up:
            return self.warmup_lr
        if self.schedule == "cosine":
            done = min(iteration, self.iterations) / self.iterations
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * done))
        passed = bisect.bisect_right(self.milestones, iteration)  # milestones are increasing
        return self.lr * self.gamma**passed

    def warmup_over(self, iterations_done: int, batch_error: float) -> bool:
        """Whether the warm-up ends after ``iterations_done`` iterations, the last with training
        error ``batch_error`` (a fraction): below ``warmup_error`` or at the cap."""
        return (
            self.warmup_lr is None
            or batch_error < self.warmup_error
            or iterations_done >= self.warmup_max_iterations
        )

    # -- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A dict of JSON types only; :meth:`from_dict` inverts it exactly."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["milestones"] = list(self.milestones)
        data["augment"] = None if self.augment is None else self.augment.to_dict()
        if self.cuda_graphs is None:  # runs saved before the option still resume
            del data["cuda_graphs"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Rebuild a recipe from :meth:`to_dict` output; missing keys take their defaults."""
        values = check_keys("Recipe", data, [f.name for f in fields(cls)])
        if isinstance(values.get("augment"), Mapping):
            values["augment"] = Augment.from_dict(values["augment"])
        # A dict that sets only one length means that one: the other is not the default.
        if "epochs" in values and values["epochs"] is not None and "iterations" not in values:
            values["iterations"] = None
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        """A recipe from JSON text (:func:`resnetlib.files.parse_json`, then :meth:`from_dict`)."""
        return cls.from_dict(parse_json(text, where="Recipe JSON"))


PAPER_CIFAR = Recipe()
"""He et al. (2015), section 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k iterations, 64k in all, 45k/5k split, pad-4 crop and flip."""

PAPER_CIFAR_WARMUP = replace(PAPER_CIFAR, warmup_lr=0.01)
""":data:`PAPER_CIFAR` with the paper's ResNet-110 warm-up: lr 0.01 until a training batch's
error is below 80% (about 400 iterations in the paper), then 0.1."""

DIGITS = Recipe(epochs=30, iterations=None, milestones=(), augment=None, val_size=0)
"""The built-in digits (16x16): the paper's optimizer at a constant lr 0.1, 30 epochs, no
augmentation (flips do not suit digits), no validation split."""

TINYIMAGENET = Recipe(
    weight_decay=5e-4,
    epochs=100,
    iterations=None,
    schedule="cosine",
    milestones=(),
    augment=Augment(pad=8, flip=True),
)
"""64x64 images (TinyImageNet, any 64x64 image folder), with ``TINYIMAGENET_MODEL``: lr 0.1
cosine-annealed to 0 over 100 epochs, weight decay 5e-4, pad-8 crop and flip (kuangliu's)."""

TINYIMAGENET_MODEL: Mapping[str, Any] = MappingProxyType({"stem": "cifar"})
"""The model options ``TINYIMAGENET`` trains with (where none are given or fixed by weights):
the 3x3 stride-1 stem, so a ResNet-18's last stage sees 8x8 maps of a 64x64 image."""

FINETUNE = Recipe(lr=0.01, iterations=None, epochs=10, schedule="cosine", milestones=())
"""Fine-tuning trained weights (``train --pretrained`` or ``--checkpoint`` without
``--recipe``): the paper's recipe at lr 0.01, cosine-annealed to 0 over 10 epochs."""


def scaling_note(recipe: Recipe, plan: Recipe, batches_per_epoch: int) -> str:
    """How ``plan`` (``recipe.resolved(batches_per_epoch, ...)``) scaled ``recipe``'s milestones
    and warm-up cap to another length, for the start-up line; empty when nothing scaled."""
    per_unit = 1 if recipe.iterations is not None else batches_per_epoch
    if plan.iterations == (recipe.iterations or recipe.epochs or 0) * per_unit:
        return ""
    parts = []
    if recipe.schedule == "step" and recipe.milestones:
        before = ", ".join(str(m * per_unit) for m in recipe.milestones)
        after = ", ".join(map(str, plan.milestones)) or "none"
        parts.append(f"milestones {before} scaled to {after}")
    if recipe.warmup_lr is not None:
        parts.append(
            f"warm-up cap {recipe.warmup_max_iterations} scaled to {plan.warmup_max_iterations}"
        )
    return f"{' and '.join(parts)} for {plan.iterations} iterations" if parts else ""


def paper_label(recipe: Recipe) -> str:
    """A paper recipe's name in the start-up line and ``run.json`` (its warm-up said)."""
    return "the paper's CIFAR recipe" + (" with warm-up" if recipe.warmup_lr is not None else "")


def paper_recipe(depth: int) -> Recipe:
    """The paper's CIFAR recipe for a network of ``depth`` layers: warm-up from 110 up."""
    check_int("depth", depth, 1)
    return PAPER_CIFAR_WARMUP if depth >= 110 else PAPER_CIFAR


def recipe_for(model: str | ResNetSpec) -> Recipe:
    """:func:`paper_recipe` for the ``paper_depth`` of a registered name's spec or of a spec."""
    from ..core.model import paper_depth
    from ..models.zoo import model_spec

    return paper_recipe(paper_depth(model_spec(model) if isinstance(model, str) else model))

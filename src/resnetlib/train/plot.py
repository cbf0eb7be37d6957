"""Training curves drawn as the paper's Figure 6: error (%) against iterations, training
error dashed, test error solid, one color per model. Needs matplotlib (the ``train`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_runs"]


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    x: str = "iteration",
    dpi: int = 100,
) -> Path:
    """Draw each run's ``train_error`` (dashed) and ``test_error`` (solid) to ``path``.

    ``runs`` maps a label (``"ResNet-56"``) to its metrics rows (as :func:`fit` records
    them); ``x`` is ``"iteration"`` or ``"epoch"``. Returns the path written.
    """
    if x not in ("iteration", "epoch"):
        raise ValueError(f"x must be 'iteration' or 'epoch'; got {x!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "resnetlib[train]"') from None
    figure, axes = plt.subplots(figsize=(6, 4), dpi=dpi)
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (label, rows) in enumerate(runs.items()):
            color = colors[i % len(colors)]
            xs = [row[x] for row in rows]
            axes.plot(
                xs, [100 * row["train_error"] for row in rows], "--", color=color, linewidth=1
            )
            axes.plot(
                xs,
                [100 * row["test_error"] for row in rows],
                "-",
                color=color,
                linewidth=1.5,
                label=label,
            )
        axes.set_xlabel("iterations" if x == "iteration" else "epochs")
        axes.set_ylabel("error (%)")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(title="dashed: training, solid: test", fontsize="small", title_fontsize="small")
        if title:
            axes.set_title(title)
        figure.tight_layout()
        target = Path(path)
        figure.savefig(target)
    finally:
        plt.close(figure)
    return target

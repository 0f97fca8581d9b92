"""Training curves."""
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Union

import numpy as np

__all__ = ['plot_history', 'plot_confusion']


def plot_history(history: List[Dict[str, Any]], path: Union[str, Path, BinaryIO], main_metric: str) -> None:
    """Loss curves (left) and the validation metric (right) per epoch, saved as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h['epoch'] for h in history]
    loss_keys = sorted({k for h in history for k in h if k.startswith('loss')})
    for key in loss_keys:
        ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker='o', ms=3, label=key)
    ax_loss.set(xlabel='epoch', ylabel='training loss', title='Training loss')
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    evaluated = [h for h in history if h.get(main_metric) is not None]
    ax_metric.plot([h['epoch'] for h in evaluated], [h[main_metric] for h in evaluated], marker='o', color='C3')
    ax_metric.set(xlabel='epoch', ylabel=main_metric, title=f'Validation {main_metric}')
    ax_metric.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format='png')
    plt.close(fig)


def plot_confusion(confusion: List[List[int]], class_names: List[str], path: Union[str, Path, BinaryIO]) -> None:
    """The confusion matrix, rows = true class, normalised per row (counts written in the cells up to 30 classes)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = min(max(4.0, 0.45 * len(class_names) + 2), 30.0)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rows, cmap='Blues', vmin=0, vmax=1)
    if len(class_names) <= 30:
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=60, ha='right')
        ax.set_yticks(ticks, class_names)
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, int(value), ha='center', va='center', color='white' if rows[i, j] > 0.5 else 'black')
    ax.set(xlabel='predicted class', ylabel='true class', title='Validation confusion matrix')
    fig.tight_layout()
    fig.savefig(path, dpi=100, format='png')
    plt.close(fig)

"""Training curves."""
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Union

import numpy as np

__all__ = ['plot_history']


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

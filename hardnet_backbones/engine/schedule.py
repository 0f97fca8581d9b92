"""The learning-rate schedule: linear warm-up, then cosine / poly decay / steps / constant, per iteration."""
import math

from .config import Config

__all__ = ['build_lr_lambda']


def build_lr_lambda(cfg: Config, steps_per_epoch: int):
    """LR multiplier per iteration: linear warm-up, then cosine / poly decay / ``gamma`` at each milestone epoch /
    constant."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    warmup = int(t.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if t.scheduler == 'step':
            return t.gamma ** sum(step >= m * steps_per_epoch for m in t.milestones)
        if t.scheduler == 'cosine':
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        elif t.scheduler == 'poly':
            decay = (1 - progress) ** t.poly_power
        else:
            decay = 1.0
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * decay

    return factor

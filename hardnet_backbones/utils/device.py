"""Where a model runs."""
import torch
import torch.nn as nn

__all__ = ['model_device']


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live; the CPU for a model without any (an onnxruntime model)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device('cpu')

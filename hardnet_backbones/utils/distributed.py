"""DistributedDataParallel plumbing for ``torchrun``: process group, collectives, evaluation sharding.

On GPUs the process group has both backends (``cpu:gloo,cuda:nccl``) and every collective moves its
tensor to the device of the process (``DistInfo.device``) first, so NCCL never sees a CPU tensor.
"""
import os
from dataclasses import dataclass
from typing import Any, Iterator, List

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..errors import ConfigError

__all__ = ['DistInfo', 'init_distributed', 'cleanup_distributed', 'is_distributed', 'all_reduce_sum',
           'all_gather_objects', 'barrier', 'ShardSampler', 'collective_device', 'process_group_backend']

_DEVICE = torch.device('cpu')


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self) -> bool:
        """Only the main process logs progress bars and writes files."""
        return self.rank == 0


def init_distributed(device: str = 'auto') -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    ``device``: 'auto' (CUDA when available), 'cuda' or 'cpu'.
    """
    use_cuda = torch.cuda.is_available() if device == 'auto' else device == 'cuda'
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError('train.device=cuda but no CUDA device is available here; use train.device=auto or cpu')
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device('cuda', local_rank)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=process_group_backend(torch_device))
    global _DEVICE
    _DEVICE = torch_device
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def process_group_backend(device: torch.device) -> str:
    """gloo on CPUs; on GPUs NCCL for CUDA tensors and gloo for any CPU tensor that still reaches a collective."""
    return 'cpu:gloo,cuda:nccl' if device.type == 'cuda' else 'gloo'


def collective_device() -> torch.device:
    """The device collectives run on: the one ``init_distributed`` chose for this process."""
    return _DEVICE


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, computed on :func:`collective_device`; returned on the tensor's own device."""
    if not is_distributed():
        return tensor
    work = tensor.to(collective_device())
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def all_gather_objects(obj: Any) -> List[Any]:
    """Every process's ``obj``, in rank order."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank r takes items r, r + W, r + 2W, ... with no padding or duplicates."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

"""DistributedDataParallel plumbing for ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
import os
from dataclasses import dataclass
from typing import Any, Iterator, List

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ['DistInfo', 'init_distributed', 'cleanup_distributed', 'is_distributed', 'all_reduce_sum',
           'all_gather_objects', 'barrier', 'ShardSampler']


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
        raise RuntimeError('train.device=cuda but no CUDA device is available')
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device('cuda', local_rank)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place); the tensor itself when not distributed."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


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

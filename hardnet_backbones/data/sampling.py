"""Augmentation that depends only on (seed, epoch, index), also inside DataLoader workers.

Worker processes hold their own copy of the dataset (for the whole run when ``persistent_workers``
is set), so an epoch stored on the main process's dataset never reaches them. The epoch therefore
travels with each index: :class:`EpochSampler` yields :class:`EpochIndex` keys, and datasets
derived from :class:`AugmentedDataset` seed their transform from the key alone.
"""
from typing import Iterator, NamedTuple, Optional, Tuple, Union

from torch.utils.data import Dataset, Sampler

__all__ = ['EpochIndex', 'EpochSampler', 'AugmentedDataset', 'sample_seed']


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of one sample: a pure function of the run seed, the epoch and the index."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2 ** 32)


class EpochIndex(NamedTuple):
    """A dataset key that carries the epoch to whichever process loads the sample."""
    epoch: int
    index: int


class EpochSampler(Sampler[EpochIndex]):
    """Wraps a sampler (e.g. ``DistributedSampler``) and yields ``EpochIndex(epoch, index)`` keys.

    ``set_epoch`` sets the epoch of the keys and forwards it to the wrapped sampler (shuffling).
    """

    def __init__(self, sampler: Sampler[int]):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[EpochIndex]:
        epoch = self.epoch
        return (EpochIndex(epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class AugmentedDataset(Dataset):
    """Base of the datasets whose random transform is seeded per sample.

    ``dataset[i]`` uses the epoch set by :meth:`set_epoch` (fine without workers);
    ``dataset[EpochIndex(epoch, i)]`` uses the key's epoch, as the training engine does.
    """

    transform = None

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (in this process only)."""
        self.epoch = epoch

    def _resolve(self, key: Union[int, EpochIndex]) -> Tuple[int, int]:
        """``(epoch, index)`` of a key, with the transform seeded for that sample."""
        epoch, index = (key.epoch, key.index) if isinstance(key, EpochIndex) else (self.epoch, int(key))
        transform: Optional[object] = self.transform
        if transform is not None and hasattr(transform, 'set_random_seed'):
            transform.set_random_seed(sample_seed(self.seed, epoch, index))
        return epoch, index

"""Randomness that depends on *what* is computed, not on process history.

Two things make a run irreproducible across a resume or a change of world size:

* data augmentation drawn from a process-global RNG: which crop a sample gets depends on
  which rank / worker handled which samples before it;
* model-side randomness (masking, teacher dropping, drop path) drawn from a global torch RNG
  whose state after a resume differs from the uninterrupted run's.

``PerSampleSeedSampler`` + ``PerSampleSeedDataset`` seed every sample's augmentation from
(seed, pass over the data, sample index), so sample ``i`` of pass ``e`` gets the same crop on
any rank, worker, or restarted process. ``IterationSeedHook`` reseeds torch / numpy /
random before every iteration from (seed, iteration, rank), so a resumed run draws the same
masks as the uninterrupted one. Together they make ``--resume`` exact and a 2-rank run
equal to a 1-rank run with the same global batch (when the model has no per-sample
randomness that depends on the rank).
"""
import random
import zlib

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.dataset import InfiniteSampler
from mmengine.registry import DATA_SAMPLERS, DATASETS, HOOKS
from torch.utils.data import Dataset, Sampler


def mix_seed(*values):
    """A 32-bit seed from integers, stable across processes and Python versions."""
    return zlib.crc32(np.asarray(values, dtype=np.int64).tobytes())


@DATASETS.register_module()
class PerSampleSeedDataset(Dataset):
    """Runs the wrapped dataset's pipeline for sample ``i`` under RNGs seeded from
    (seed, pass, i); the process-global RNG states are left untouched.

    Indices come from ``PerSampleSeedSampler`` as ``pass * len(dataset) + i``.
    """

    def __init__(self, dataset, seed=0):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed = seed

    def set_base_seed(self, seed):
        if seed is not None:
            self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # metainfo, full_init, ... of the wrapped dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, virtual_index):
        size = len(self.dataset)
        data_pass, index = divmod(int(virtual_index), size)
        sample_seed = mix_seed(self.seed, data_pass, index)
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            np.random.seed(sample_seed)
            random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)


@DATA_SAMPLERS.register_module()
class PerSampleSeedSampler(Sampler):
    """Wraps an mmengine sampler (``DefaultSampler`` / ``InfiniteSampler``) and tags each
    index with the number of the pass over the data, for ``PerSampleSeedDataset``."""

    def __init__(self, dataset, sampler=dict(type='DefaultSampler', shuffle=True), seed=None):
        if not isinstance(dataset, PerSampleSeedDataset):
            raise TypeError('PerSampleSeedSampler needs the dataset wrapped in '
                            "dict(type='PerSampleSeedDataset', dataset=...)")
        self.sampler = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=seed))
        self.dataset_size = len(dataset)
        dataset.set_base_seed(seed)
        self.passes = 0

    def set_epoch(self, epoch):
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        if isinstance(self.sampler, InfiniteSampler):
            # one endless stream of permutations, rank r taking positions r, r+W, ...:
            # the pass of the j-th index here is its global position // dataset size
            rank, world = self.sampler.rank, self.sampler.world_size
            for j, index in enumerate(self.sampler):
                yield ((j * world + rank) // self.dataset_size) * self.dataset_size + index
            return
        data_pass = self.passes  # DefaultSampler: one __iter__ call per epoch
        self.passes += 1
        for index in self.sampler:
            yield data_pass * self.dataset_size + index


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Before every training iteration, seed torch (all devices), numpy and random from
    (seed, iteration, rank)."""
    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        base = self.seed if self.seed is not None else (runner.seed or 0)
        seed = mix_seed(base, runner.iter, get_rank())
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

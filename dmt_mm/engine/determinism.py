"""Randomness that depends on *what* is computed, not on process history or world size.

Three things would make a run irreproducible across a resume or a change of world size:

* data augmentation drawn from a process-global RNG: which crop a sample gets would depend
  on which rank / worker handled which samples before it. ``PerSampleSeedSampler`` +
  ``PerSampleSeedDataset`` seed every sample's pipeline from (seed, pass, index), the pass
  being the loop's epoch (``set_epoch``) or, for ``InfiniteSampler``, the position in the
  stream -- so it is the same on any rank, worker, or restarted process;
* model-side randomness (dropout, drop path, masking, teacher dropping) drawn from global
  RNGs whose state after a resume differs: ``IterationSeedHook`` reseeds torch / numpy /
  random before every iteration from (seed, iteration, rank);
* with N ranks, each rank drawing masks for its own B samples from its own stream: a
  1-process run with N*B samples draws different ones. :class:`PerSampleRandomness` makes
  each random tensor whose first dimension runs over the batch (``torch.rand(B, ...)``,
  dropout masks, ``uniform_`` on a (k*B, ...) tensor) be drawn for the *global* batch from
  a stream shared by all ranks, each rank keeping its own samples' rows. Rank r holds the
  samples r, r+N, r+2N, ... of the global batch (mmengine's samplers deal indices out that
  way), so the rows are taken with that stride. Draws that are not per sample
  (``randperm``, ...) come from the rank's own stream. Nothing here changes the CUDA
  kernels: the extra cost is drawing N times as many numbers for the (small) per-sample
  masks, and only in distributed training.
"""
import contextlib
import random
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, DATASETS, HOOKS
from torch.overrides import TorchFunctionMode
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

    def get_data_info(self, virtual_index):
        """The wrapped dataset's annotation of a sampler index (for batch samplers that
        group by image shape, e.g. mmdet's ``AspectRatioBatchSampler``)."""
        return self.dataset.get_data_info(int(virtual_index) % len(self.dataset))

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
    index with the number of the pass over the data, for ``PerSampleSeedDataset``.

    The pass of an epoch-based sampler is its epoch, which the training loop sets
    (``DistSamplerSeedHook``, also for a resumed run); for ``InfiniteSampler`` it is the
    position in the endless stream of permutations.
    """

    def __init__(self, dataset, sampler=dict(type='DefaultSampler', shuffle=True), seed=None):
        if not isinstance(dataset, PerSampleSeedDataset):
            raise TypeError('PerSampleSeedSampler needs the dataset wrapped in '
                            "dict(type='PerSampleSeedDataset', dataset=...)")
        self.dataset = dataset
        self.sampler = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=seed))
        self.dataset_size = len(dataset)
        dataset.set_base_seed(seed if seed is not None else getattr(self.sampler, 'seed', None))
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch
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
        data_pass = self.epoch
        for index in self.sampler:
            yield data_pass * self.dataset_size + index


# --- model-side randomness ----------------------------------------------------------------
def _device_rng(device):
    """(get_state, set_state, manual_seed) of the default generator of ``device``."""
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()

        def seed(value):
            with torch.cuda.device(index):
                torch.cuda.manual_seed(value)
        return (lambda: torch.cuda.get_rng_state(index),
                lambda state: torch.cuda.set_rng_state(state, index), seed)
    if device.type != 'cpu':
        raise NotImplementedError(device.type)
    return torch.get_rng_state, torch.set_rng_state, torch.manual_seed


def _size_args(args, kwargs):
    """The size of a ``torch.rand(*size)`` / ``torch.rand(size)`` call, and a function
    rebuilding the call's arguments with another size."""
    if 'size' in kwargs:
        return tuple(kwargs['size']), lambda s: (args, dict(kwargs, size=s))
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(args[0]), lambda s: ((s, ), kwargs)
    return tuple(args), lambda s: (tuple(s), kwargs)


def _randint_size(args, kwargs):
    if 'size' in kwargs:
        return tuple(kwargs['size']), lambda s: (args, dict(kwargs, size=s))
    return tuple(args[-1]), lambda s: (args[:-1] + (s, ), kwargs)


_FACTORIES = {torch.rand: _size_args, torch.randn: _size_args, torch.randint: _randint_size}
_LIKE = (torch.rand_like, torch.randn_like, torch.randint_like)
_IN_PLACE = (torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_,
             torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.log_normal_,
             torch.Tensor.cauchy_)
_FEATURE_DROPOUT = (F.dropout1d, F.dropout2d, F.dropout3d)
_DROPOUT = (F.dropout, ) + _FEATURE_DROPOUT
# draw randomness internally, per call, with no way to take a sample's share
_NOT_PER_SAMPLE = (F.scaled_dot_product_attention, F.alpha_dropout, F.feature_alpha_dropout,
                   F.rrelu, F.gumbel_softmax)


class PerSampleRandomness:
    """Per-sample random draws for data-parallel training (see the module docstring).

    ``start_step(seed)`` before each training step (``IterationSeedHook`` calls it), then
    run the forward inside ``draws(batch_size)``.
    """

    def __init__(self):
        self.rank, self.world_size = get_dist_info()
        self.seed = None
        self._states = {}
        self._warned = set()

    def start_step(self, seed):
        self.seed = seed
        self._states = {}

    @contextlib.contextmanager
    def _shared_stream(self, device):
        """Make the stream all ranks share the default generator of ``device``."""
        device = torch.device(device)
        get_state, set_state, manual_seed = _device_rng(device)
        own = get_state()
        key = str(device)
        if key in self._states:
            set_state(self._states[key])
        else:
            manual_seed(self.seed)
        try:
            yield
        finally:
            self._states[key] = get_state()
            set_state(own)

    def _rows(self, tensor, local_rows, batch):
        """This rank's rows of a tensor drawn for the global batch."""
        per_sample = local_rows // batch
        rest = tensor.shape[1:]
        return tensor.reshape(batch, self.world_size, per_sample, *rest)[:, self.rank] \
            .reshape(local_rows, *rest)

    def _global_draw(self, device, rows, batch, draw):
        with self._shared_stream(device):
            drawn = draw(rows * self.world_size)
        return self._rows(drawn, rows, batch)

    @contextlib.contextmanager
    def draws(self, batch_size):
        if self.seed is None or self.world_size == 1 or batch_size < 1:
            yield
            return
        with _PerSampleMode(self, batch_size):
            yield

    def warn_once(self, func):
        name = getattr(func, '__name__', str(func))
        if name not in self._warned:
            self._warned.add(name)
            print_log(f'{name} draws random numbers that cannot be taken per sample: with '
                      f'{self.world_size} ranks these draws differ from a 1-process run '
                      '(they stay independent across ranks)', logger='current', level=30)


class _PerSampleMode(TorchFunctionMode):
    """Routes per-sample random draws of the forward through ``PerSampleRandomness``."""

    def __init__(self, owner, batch):
        super().__init__()
        self.owner, self.batch = owner, batch

    def _per_sample(self, rows):
        return rows > 0 and rows % self.batch == 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get('generator') is not None or kwargs.get('out') is not None:
            return func(*args, **kwargs)
        owner = self.owner
        if func in _FACTORIES:
            size, rebuild = _FACTORIES[func](args, kwargs)
            if size and self._per_sample(size[0]):
                device = kwargs.get('device') or torch.get_default_device()

                def draw(rows):
                    new_args, new_kwargs = rebuild((rows, ) + size[1:])
                    return func(*new_args, **new_kwargs)
                return owner._global_draw(device, size[0], self.batch, draw)
        elif func in _LIKE:
            like = args[0]
            if like.dim() and self._per_sample(like.shape[0]):
                return owner._global_draw(
                    kwargs.get('device') or like.device, like.shape[0], self.batch,
                    lambda rows: func(like.new_empty((rows, ) + like.shape[1:]), *args[1:],
                                      **kwargs))
        elif func in _IN_PLACE:
            target = args[0]
            scalar_p = func is not torch.Tensor.bernoulli_ or not any(
                torch.is_tensor(a) for a in args[1:] + tuple(kwargs.values()))
            if scalar_p and target.dim() and self._per_sample(target.shape[0]):
                rows = owner._global_draw(
                    target.device, target.shape[0], self.batch,
                    lambda n: func(target.new_empty((n, ) + target.shape[1:]), *args[1:],
                                   **kwargs))
                with torch.no_grad():
                    return target.copy_(rows)
        elif func in _DROPOUT:
            out = self._dropout(func, *args, **kwargs)
            if out is not None:
                return out
        elif func in _NOT_PER_SAMPLE:
            dropout_p = kwargs.get('dropout_p', args[4] if len(args) > 4 else 0.0)
            if func is not F.scaled_dot_product_attention or dropout_p > 0:
                owner.warn_once(func)
        return func(*args, **kwargs)

    def _dropout(self, func, input, p=0.5, training=True, inplace=False):
        """The dropout mask of the global batch, drawn by the same function on ones, this
        rank's rows applied to ``input``; None when there is nothing per sample."""
        if not training or p == 0 or input.dim() < 2 or not self._per_sample(input.shape[0]):
            return None
        shape = input.shape if func is F.dropout else input.shape[:2] + (1, ) * (input.dim() - 2)
        mask = self.owner._global_draw(
            input.device, input.shape[0], self.batch,
            lambda rows: func(input.new_ones((rows, ) + tuple(shape[1:])), p, True))
        return input.mul_(mask) if inplace else input * mask


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Before every training iteration, seed torch (all devices), numpy and random from
    (seed, iteration, rank); with ``PerSampleRandomness`` in the model wrapper, also start
    the stream all ranks share for per-sample draws, seeded from (seed, iteration) -- the
    seed a 1-process run uses for torch, so both draw the same masks."""
    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        base = self.seed if self.seed is not None else (runner.seed or 0)
        rank, world_size = get_dist_info()
        shared, own = mix_seed(base, runner.iter), mix_seed(base, runner.iter, rank)
        per_sample = getattr(runner.model, 'per_sample_randomness', None)
        if per_sample is not None and world_size > 1:
            per_sample.start_step(shared)
        torch.manual_seed(shared if world_size == 1 else own)
        np.random.seed(own)
        random.seed(own)


def rng_states():
    """This process's RNG states, for a checkpoint."""
    states = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                  python=random.getstate(), num_threads=torch.get_num_threads())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['python'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])

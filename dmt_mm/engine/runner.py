"""mmengine's Runner, with every rank's RNG states in its checkpoints and a compiled train
step that is not recompiled for each batch."""
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .determinism import rng_states, set_rng_states


def bare_model(model):
    """The model inside a DDP wrapper or a test-time-augmentation model (both keep it as
    ``module``; mmseg's TTA model is no registered wrapper), or the model itself."""
    return model.module if hasattr(model, 'module') else model


@RUNNERS.register_module()
class ReproducibleRunner(Runner):
    """A Runner whose checkpoints carry the RNG states (torch CPU / CUDA, numpy, python) of
    every rank under ``meta['rng_states']``, restored per rank on resume.

    ``IterationSeedHook`` reseeds all of them before every iteration, so a resumed run
    draws exactly what the uninterrupted one drew even without this; the saved states make
    the same hold for a config that turns the per-iteration seeding off. mmengine's
    ``CheckpointHook`` calls ``save_checkpoint`` on every rank (only rank 0 writes), which
    is where the states are gathered.
    """

    def _maybe_compile(self, target):
        """mmengine compiles the whole ``train_step``, the data preprocessor included. It
        reads the data samples: their device copy deep-copies each sample's metainfo, and
        dynamo guarded on the identity of every string in it (``img_path``), so each new batch
        failed the guards and recompiled the step, up to dynamo's limit, after which the step
        ran eagerly (a decoding preprocessor would guard on each batch's crop boxes the same
        way). The preprocessor runs eagerly instead. Its graph break falls inside the optim
        wrapper's context, which dynamo cannot split, so the step's own few lines run eagerly
        and dynamo compiles what they call: the forward with the losses is one graph."""
        compile_cfg = self.cfg.get('compile')
        if compile_cfg is not None and compile_cfg is not False:  # mmengine's test
            preprocessor = bare_model(self.model).data_preprocessor
            preprocessor.forward = torch.compiler.disable(preprocessor.forward)
        super()._maybe_compile(target)

    def save_checkpoint(self, out_dir, filename, *args, meta=None, **kwargs):
        meta = dict(meta or {})
        states = rng_states()
        meta['rng_states'] = all_gather_object(states) if self.distributed else [states]
        return super().save_checkpoint(out_dir, filename, *args, meta=meta, **kwargs)

    def load_checkpoint(self, filename, *args, **kwargs):
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        self._loaded_meta = checkpoint.get('meta') or {}
        return checkpoint

    def resume(self, filename, *args, **kwargs):
        super().resume(filename, *args, **kwargs)
        states = self._loaded_meta.get('rng_states')
        rank, world_size = get_dist_info()
        if not states:
            return
        if len(states) != world_size:
            self.logger.warning(f'the checkpoint holds the RNG states of {len(states)} ranks, '
                                f'this run has {world_size}: they are not restored')
            return
        set_rng_states(states[rank])
        saved_threads = states[rank].get('num_threads')
        if saved_threads is not None and saved_threads != rng_states()['num_threads']:
            self.logger.warning(
                f'the checkpoint was written by a run with {saved_threads} CPU threads, this '
                f'one has {rng_states()["num_threads"]}: CPU results are bit-identical only '
                'with the same thread count (set OMP_NUM_THREADS as before)')

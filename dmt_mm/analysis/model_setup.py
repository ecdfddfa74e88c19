"""A DMT config made ready for measuring: benchmark overrides (sizes, number of teachers,
random teachers), the model built quietly on a device, and a synthetic batch."""
import copy
import logging
from contextlib import contextmanager

import torch


def prepare_config(cfg, *, batch_size=None, img_size=None, student_arch=None, teacher_arch=None,
                   num_teachers=None, random_teachers=False):
    """Apply the benchmark's overrides to a DMT config (in place) and return it."""
    model = cfg.model
    if model.get('type') != 'DMT':
        raise ValueError(f'benchmark_pretrain needs a DMT pretraining config (model.type=DMT), '
                         f'got model.type={model.get("type")!r}; for other configs use '
                         'tools/analysis_tools/get_flops.py')
    generator = model.target_generator
    teachers = [dict(t) for t in generator.teachers]
    norms = generator.get('target_norm', None)
    if num_teachers is not None:
        if num_teachers < 1:
            raise ValueError(f'--num-teachers must be >= 1, got {num_teachers}')
        if num_teachers > len(teachers) and not random_teachers:
            raise ValueError(f'--num-teachers {num_teachers} exceeds the config\'s {len(teachers)} '
                             'teachers: extra copies have no checkpoint; add --random-teachers')
        base = teachers
        teachers = []
        for k in range(num_teachers):
            t = copy.deepcopy(base[k % len(base)])
            if k >= len(base):
                t['name'] = f'{t.get("name", "teacher")}_{k}'
            teachers.append(t)
        if isinstance(norms, (list, tuple)):  # one per teacher: cycled like the teachers
            generator.target_norm = [norms[k % len(norms)] for k in range(num_teachers)]
        kept = {t['name'] for t in teachers}
        generator.teacher_checkpoints = {
            k: v for k, v in dict(generator.get('teacher_checkpoints') or {}).items()
            if k in kept}
    if random_teachers:
        for t in teachers:
            t['checkpoint'] = None
        generator.teacher_checkpoints = {}
        generator.allow_random_teachers = True
    for t in teachers:
        if t.get('type') == 'TimmTeacher':  # its own arch and resolution (docs/teachers.md)
            continue
        bb = dict(t.get('backbone', {}))
        if teacher_arch is not None:
            bb['arch'] = teacher_arch
        if img_size is not None and t.get('img_size') is None:
            bb['img_size'] = img_size
        t['backbone'] = bb
    generator.teachers = teachers
    if student_arch is not None:
        model.backbone.arch = student_arch
    if img_size is not None:
        model.backbone.img_size = img_size
        from .data_throughput import train_pipeline
        for transform in train_pipeline(cfg):  # the loader's crops: the size measured
            if str(transform.get('type')).split('.')[-1] in ('RandomResizedCrop',
                                                            'LoadRandomResizedCrop'):
                transform['scale'] = img_size
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


def import_config_modules(cfg):
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    imports = cfg.get('custom_imports', None)
    if imports:
        import_modules_from_strings(**imports)
    import dmt_mm.models  # noqa: F401  (the benchmark itself needs the DMT registrations)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))


def build_model(cfg, device):
    from mmpretrain.registry import MODELS
    import_config_modules(cfg)
    with quiet_mmengine_log():  # init_weights logs every tensor
        model = MODELS.build(cfg.model)
        model.init_weights()
    return model.to(device)


@contextmanager
def quiet_mmengine_log(level=logging.WARNING):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def input_size(model):
    patch = model.backbone.patch_embed.projection.kernel_size
    grid = model.backbone.patch_resolution
    return (grid[0] * patch[0], grid[1] * patch[1])


def synthetic_batch(batch_size, size, device, seed=0):
    """A collated batch as the DMT pipeline yields it (uint8 images, no labels), on device."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (batch_size, 3, *size), generator=gen, dtype=torch.uint8)
    return dict(inputs=imgs.to(device), data_samples=[DataSample() for _ in range(batch_size)])

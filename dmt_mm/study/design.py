"""What the miniature study can run, and the options that choose among it.

The three toy teachers (and the controlled experiment's three), the pretraining methods, the
transfer tasks and probes with their configs, the stage lengths of each profile, the toy
world of each profile and the notes printed under the tables. Kept apart from the planning
of the stages (:mod:`.study`) so that ``tools/run_pipeline.py`` and the tests can list and
check the choices without building a plan.
"""
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dmt_mm.datasets.toy_world import STUDY_WORLD, ToyWorldSpec

# the three toy teachers: config, mmpretrain algorithm, official layout and file name
TEACHERS = [
    dict(name='mae', label='MAE', paradigm='masked image modelling', algorithm='MAE',
         fmt='mae', config='mae_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py',
         file='mae_pretrain_vit_toy.pth'),
    dict(name='mocov3', label='MoCo v3', paradigm='contrastive', algorithm='MoCoV3',
         fmt='mocov3', config='mocov3_vit-toyteacher-p8_1xb32-coslr-300it_toyworld.py',
         file='mocov3_vit-toy-p8.pth.tar'),
    dict(name='byol', label='BYOL', algorithm='BYOL', fmt='dino',
         paradigm='EMA self-distillation (stands in for iBOT/DINO)',
         config='byol_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py',
         file='byol_vittoy16_pretrain_full_checkpoint.pth'),
]
TEACHER_NAMES = [t['name'] for t in TEACHERS]

# the controlled experiment's teachers: each learns one known factor map per patch
_CONTROLLED_TEACHER = ('controlled/linear-teacher_vit-toyteacher-p16_1xb16-300it_toyworld-64x64-'
                       '{}.py')
CONTROLLED_TEACHERS = [
    dict(name=name, label=name, knows=knows, config=_CONTROLLED_TEACHER.format(name),
         file=f'{name}_teacher_vit-toy-p16.pth')
    for name, knows in (('category', 'the object category (shape)'),
                        ('appearance', 'colour x texture'),
                        ('geometry', 'size x depth order'))]
CONTROLLED_FACTORS = ('category', 'colour', 'texture', 'size', 'depth')

# pretraining methods: table label, DMT config (None: no pretraining), teachers used
SCRATCH = dict(label='random init (no pretraining)', config=None, teachers=[])
METHODS = {
    'dmt': dict(label='DMT (TFD + SFD)',
                config='dmt_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                teachers=TEACHER_NAMES),
    'dmt_mae': dict(label='DMT, one teacher (MAE)',
                    config='dmt_vit-toy-p16_mae_1xb32-300it_toyworld.py', teachers=['mae']),
    'dmt_mocov3': dict(label='DMT, one teacher (MoCo v3)',
                       config='dmt_vit-toy-p16_mocov3_1xb32-300it_toyworld.py',
                       teachers=['mocov3']),
    'dmt_byol': dict(label='DMT, one teacher (BYOL)',
                     config='dmt_vit-toy-p16_byol_1xb32-300it_toyworld.py', teachers=['byol']),
    'dmt_tfd': dict(label='DMT, TFD only',
                    config='dmt-tfd_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                    teachers=TEACHER_NAMES),
    'dmt_sfd': dict(label='DMT, SFD only',
                    config='dmt-sfd_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                    teachers=TEACHER_NAMES),
    'scratch': SCRATCH,
}
BASELINES = ['dmt_mae', 'dmt_mocov3', 'dmt_byol', 'dmt_tfd', 'dmt_sfd', 'scratch']
CONTROLLED_METHODS = OrderedDict([('dmt', dict(
    label='DMT (TFD + SFD)', teachers=[t['name'] for t in CONTROLLED_TEACHERS],
    config='controlled/dmt_vit-toy-p16_category-appearance-geometry_1xb32-300it_toyworld.py'))])
for _t in CONTROLLED_TEACHERS:
    CONTROLLED_METHODS[f'dmt_{_t["name"]}'] = dict(
        label=f'DMT, one teacher ({_t["name"]})', teachers=[_t['name']],
        config=f'controlled/dmt_vit-toy-p16_{_t["name"]}_1xb32-300it_toyworld.py')
CONTROLLED_METHODS['scratch'] = SCRATCH

# transfer tasks and frozen-feature probes: config, how its length is set (None: nothing
# trains), its tool, and its title
TASKS = {
    'det': dict(config='cascade-mask-rcnn_dmt-vit-toy-simplefpn_1xb4-160it_toyworld.py',
                by='iters', title='toy detection (Cascade Mask R-CNN, COCO AP)'),
    'seg': dict(config='upernet_dmt-vit-toy-f2p_1xb4-160it_toyworld-128x128.py',
                by='iters', title='toy segmentation (UperNet, mIoU)'),
    'cls': dict(config='dmt-vit-toy-p16_1xb16-coslr-3e_toyworld-cls.py', by='epochs',
                title='toy classification (fine-tuning, top-1)'),
    'knn': dict(config='knn_dmt-vit-toy-p16_k20-t0.07_toyworld-cls.py', by=None,
                title='k-NN probe (k = 20, T = 0.07, top-1)'),
    'linear': dict(config='logreg_dmt-vit-toy-p16_c0.316_toyworld-cls.py', by=None,
                   title='linear probe (logistic regression on cached features, top-1)'),
    'seg_linear': dict(config='linear_dmt-vit-toy-p16_1xb8-200it_toyworld-128x128.py',
                       by='iters', title='dense linear probe (mIoU)'),
}
TRANSFER = {k: TASKS[k] for k in ('det', 'seg', 'cls')}
PROBES = {k: TASKS[k] for k in ('knn', 'linear', 'seg_linear')}
# the main study's k-NN probe also labels the single-object split by these factors (one
# column each): what a student knows beyond the category, which no toy model here learns
KNN_FACTORS = ('colour', 'texture', 'size')

# lengths of every stage: 'default' equals the numbers in the configs' names
PROFILES = {
    'default': dict(teacher_iters=300, dmt_iters=300, det_iters=160, seg_iters=160,
                    cls_epochs=3, seg_linear_iters=200, pca_size=224,
                    log_interval=None),
    'quick': dict(teacher_iters=4, dmt_iters=4, det_iters=2, seg_iters=2, cls_epochs=1,
                  seg_linear_iters=2, pca_size=64, log_interval=1),
}
# the toy world of each profile; quick: a few images of every kind, enough for k = 20
WORLDS = {'default': STUDY_WORLD,
          'quick': ToyWorldSpec(version=2, num_train=24, num_val=6, max_objects=5,
                                cls_per_class_train=6, cls_per_class_val=3)}
STUDENT_FILE = 'student_vit-toy-p16.pth'
TABLE_NOTES = (
    'Toy world, CPU: a miniature of the paper\'s tables (ImageNet top-1 -> toy classification '
    'fine-tuning top-1; COCO Cascade Mask R-CNN AP -> toy detection AP; ADE20K UperNet mIoU '
    '-> toy segmentation mIoU) and of the frozen-feature probes (k-NN and linear top-1 on the '
    'single-object split, dense linear mIoU on the scenes; k-NN top-1 (colour / texture / '
    'size): the same k-NN probe with the images labelled by that factor). The numbers show '
    'that every stage works end to end; they are not evidence about DMT at scale.',
    'Teachers: MAE (masked image modelling), MoCo v3 (contrastive) and BYOL (EMA '
    'self-distillation; it stands in for iBOT / DINO, which mmpretrain 1.2 does not ship), '
    'pretrained with mmpretrain on the toy world\'s unlabeled images, saved in the official '
    'MAE / MoCo v3 / DINO file layouts and loaded with checkpoint_format=\'auto\'.',
    'pretrain time: the student\'s distillation (mmengine\'s mean iteration time x '
    'iterations, start-up and evaluation excluded), one process, CPU. random init: none.',
)
CONTROLLED_NOTES = (
    'Controlled experiment, toy world: three teachers trained with known objectives (per '
    'patch: category; colour x texture ("appearance"); size x depth order ("geometry")), '
    'DMT of the toy student from all three and from each alone; every column is a dense '
    'linear probe (frozen student, BatchNorm + 1x1 conv, mIoU) of one factor of the scenes.',
    'Expected if TFD + SFD transfer what each teacher knows: DMT close to each specialist on '
    'that specialist\'s factors, and each single-teacher student clearly below DMT on the '
    'factors its teacher lacks. Teacher rows: the same probe of the teachers themselves.',
)


@dataclass
class StudyOptions:
    """What to run (see tools/run_pipeline.py for the command-line flags), and where:
    ``tools_dir`` holds train.py / test.py / model_converters / analysis_tools,
    ``configs_dir`` the study's configs (a checkout's ``configs/toy/pipeline``)."""
    tools_dir: str = ''
    configs_dir: str = ''
    work_dir: str = 'work_dirs/pipeline'
    profile: str = 'default'
    with_baselines: bool = False
    controlled: bool = False
    seeds: int = 1
    methods: Optional[List[str]] = None      # explicit method list (default: dmt [+ baselines])
    overrides: Dict = field(default_factory=dict)  # profile entries to change
    images: Optional[List[str]] = None       # PCA picture photos (default: bundled ones)

    def check_paths(self) -> None:
        for label, folder, needed in (('tools_dir', self.tools_dir, 'train.py'),
                                      ('configs_dir', self.configs_dir,
                                       METHODS['dmt']['config'])):
            if not folder or not osp.isfile(osp.join(folder, needed)):
                raise ValueError(f'{label}={folder!r} does not hold {needed}: pass the '
                                 f'folder of a dmt_mm checkout (tools/run_pipeline.py does)')

    def lengths(self) -> Dict:
        if self.profile not in PROFILES:
            raise ValueError(f'unknown profile {self.profile!r}; choose one of '
                             f'{sorted(PROFILES)}')
        lengths = dict(PROFILES[self.profile])
        unknown = set(self.overrides) - set(lengths)
        if unknown:
            raise ValueError(f'unknown length overrides {sorted(unknown)}; known: '
                             f'{sorted(lengths)}')
        for key, value in self.overrides.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'--set {key}={value}: lengths are positive integers '
                                 f'(e.g. --set {key}={PROFILES["default"][key] or 10})')
        lengths.update(self.overrides)
        return lengths

    def method_table(self) -> Dict:
        return CONTROLLED_METHODS if self.controlled else METHODS

    def method_keys(self) -> List[str]:
        table = self.method_table()
        if self.methods:
            keys = list(self.methods)
        elif self.controlled:
            keys = list(CONTROLLED_METHODS)
        else:
            keys = ['dmt'] + (BASELINES if self.with_baselines else [])
        unknown = [k for k in keys if k not in table]
        if unknown:
            raise ValueError(f'unknown methods {unknown}; choose from {list(table)}')
        if self.seeds < 1:
            raise ValueError(f'--seeds must be at least 1, got {self.seeds}')
        return keys

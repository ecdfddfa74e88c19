"""Modules registered in mmpretrain's registry (scope ``mmpretrain``): the student backbone,
frozen teachers, the DMT algorithm with its target generator and distillation head, target
normalisers and losses. mmdet / mmseg configs refer to them with the scope prefix, e.g.
``mmpretrain.DMTViT``."""
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .target_generators import *  # noqa: F401,F403
from .target_norm import *  # noqa: F401,F403
from .teachers import *  # noqa: F401,F403

from .normalizers import (EMAStdTargetNorm, IdentityTargetNorm, LNTargetNorm, PHISTargetNorm,
                          TARGET_NORM_ALIASES, build_target_norm, hadamard_matrix)

__all__ = ['IdentityTargetNorm', 'LNTargetNorm', 'EMAStdTargetNorm', 'PHISTargetNorm',
           'TARGET_NORM_ALIASES', 'build_target_norm', 'hadamard_matrix']

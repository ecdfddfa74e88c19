from .normalizers import (
                          TARGET_NORM_SHORTHANDS,
                          EMAStdTargetNorm,
                          IdentityTargetNorm,
                          LNTargetNorm,
                          PHISTargetNorm,
                          build_target_norm,
                          hadamard_matrix,
)

__all__ = ['IdentityTargetNorm', 'LNTargetNorm', 'EMAStdTargetNorm', 'PHISTargetNorm',
           'TARGET_NORM_SHORTHANDS', 'build_target_norm', 'hadamard_matrix']

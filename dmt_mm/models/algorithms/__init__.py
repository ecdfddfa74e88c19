from .dmt import DMT, upgrade_state_dict

__all__ = ['DMT', 'upgrade_state_dict']

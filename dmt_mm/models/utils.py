"""Strict config checking for DMT's parts: a misspelled or unknown key is an error that
names the valid keys, never a silently ignored option."""
import difflib
import inspect
from typing import Iterable, Mapping, Optional, Sequence

import torch.nn as nn
from mmpretrain.registry import MODELS


def check_keys(cfg: Mapping, valid: Iterable[str], where: str) -> None:
    """Raise a ValueError naming every key of ``cfg`` not in ``valid`` (with the closest
    valid spelling) and the valid keys."""
    valid = list(valid)
    unknown = [k for k in cfg if k not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hints.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
    raise ValueError(f'{where}: unknown key{"s" if len(unknown) > 1 else ""} '
                     f'{", ".join(hints)}; valid keys: {", ".join(sorted(valid))}')


def init_arguments(cls) -> Optional[Sequence[str]]:
    """Keyword arguments ``cls(...)`` accepts, or None when it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_part(cfg, where: str, filled: Optional[Mapping] = None,
               default_type: Optional[str] = None) -> nn.Module:
    """Build a registered module from ``cfg`` after checking its keys against its class.

    ``filled``: arguments the caller derives (widths, names, ...); setting one of them in
    the config is an error too, since the derived value would override it.
    """
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    if default_type is not None:
        cfg.setdefault('type', default_type)
    if 'type' not in cfg:
        raise ValueError(f'{where}: no `type` given')
    cls = MODELS.get(cfg['type'])
    if cls is None:
        raise ValueError(f'{where}: type {cfg["type"]!r} is not registered in mmpretrain\'s '
                         'MODELS (check the spelling and custom_imports)')
    filled = dict(filled or {})
    derived = sorted(k for k in filled if k in cfg)
    if derived:
        raise ValueError(f'{where}: {", ".join(derived)} {"is" if len(derived) == 1 else "are"}'
                         ' derived by the algorithm; remove it from the config')
    valid = init_arguments(cls)
    if valid is not None:
        check_keys({k: v for k, v in cfg.items() if k != 'type'},
                   [k for k in valid if k not in filled], f'{where} ({cls.__name__})')
    cfg.update(filled)
    return MODELS.build(cfg)

"""The error and the message pieces shared by every checkpoint-layout converter.

Both the plain-ViT layouts (:mod:`.vit_layouts`) and the timm-teacher layouts
(:mod:`.teacher_layouts`) refuse a file in one line naming the keys and the likely fix; the
exception type and the way keys are summarised in those lines live here, once.
"""
import re
from collections import defaultdict
from typing import List, Mapping, Optional

from dmt_mm.errors import UserError


class CheckpointFormatError(UserError, ValueError):
    """The checkpoint does not hold a complete ViT encoder of the expected shape."""


def summarise_keys(keys, limit: int = 12) -> str:
    """'layers.11.* (12), head.* (4)' -- group keys up to their first block index."""
    groups = defaultdict(int)
    for key in keys:
        parts = key.split('.')
        head = []
        for part in parts[:-1]:
            head.append(part)
            if part.isdigit() or len(head) == 3:
                break
        groups['.'.join(head) + '.*' if head else key] += 1
    items = [f'{g} ({n})' if n > 1 else g for g, n in groups.items()]
    more = f', ... ({len(items) - limit} more groups)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def first_keys(mapping, n=8):
    keys = list(mapping)
    return keys[:n] + (['...'] if len(keys) > n else [])


_RESNET_KEY = re.compile(r'(^|\.)layer[1-4]\.\d+\.(conv|bn)[1-3]\.weight$')


def not_a_vit(state_dict: Mapping, container: str) -> Optional[str]:
    """Why ``state_dict`` cannot be a ViT checkpoint, when its keys say what it is."""
    resnet = next((k for k in state_dict if _RESNET_KEY.search(k)), None)
    if resnet is not None:
        return (f'this is a ResNet checkpoint (e.g. {resnet!r} in {container}), a ViT is '
                'needed: DMT teachers and students are Vision Transformers. Take the ViT '
                'file of the same method (MoCo v3: vit-b-300ep.pth.tar, not r-50-*.pth.tar)')
    return None


def mismatch_parts(missing, unexpected, mismatched, hints, what='keys', limit=12,
                    shown=6) -> List[str]:
    """The pieces of a 'does not fit' message: missing, unexpected and mismatched keys, then
    the likely causes."""
    parts = []
    if missing:
        parts.append(f'missing {len(missing)} {what}: {summarise_keys(missing, limit)}')
    if unexpected:
        parts.append(f'unexpected {len(unexpected)} keys: {summarise_keys(unexpected, limit)}')
    if mismatched:
        parts.append(f'{len(mismatched)} shape mismatches: ' + '; '.join(mismatched[:shown]))
    return parts + ['likely cause: ' + h for h in hints]

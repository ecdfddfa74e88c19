"""Moved to :mod:`dmt_mm.checkpoint.formats`; this alias keeps old imports working."""
import sys

from dmt_mm.checkpoint import formats

sys.modules[__name__] = formats

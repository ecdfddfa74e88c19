"""Moved to :mod:`dmt_mm.checkpoint.loading`; this alias keeps old imports working."""
import sys

from dmt_mm.checkpoint import loading

sys.modules[__name__] = loading

"""Moved to :mod:`dmt_mm.checkpoint.export`; this alias keeps old imports working."""
import sys

from dmt_mm.checkpoint import export

sys.modules[__name__] = export

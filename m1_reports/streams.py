"""The old name of :mod:`m1_reports.read_streams`, kept for imports that still use it (``tests/test_layers.py``);
remove it when none do."""

from m1_reports.read_streams import RECORD_COLUMNS

__all__ = ["RECORD_COLUMNS"]

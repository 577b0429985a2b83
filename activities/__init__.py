"""Activities: the I/O and decoding side. `ANALYSIS_ACTIVITIES` is what a worker registers."""

from .window import ANALYSIS_ACTIVITIES, analyze_window, probe_source, write_report

__all__ = ["ANALYSIS_ACTIVITIES", "analyze_window", "probe_source", "write_report"]

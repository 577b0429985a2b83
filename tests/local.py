"""Analyse a file window by window in this process, as the workflow would (no Temporal)."""

from activities.offline import analyse_file

__all__ = ["analyse_file"]

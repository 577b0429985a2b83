"""Workflows: deterministic orchestration only (no numpy, no av, no I/O)."""

from .stream import StreamMonitorWorkflow

__all__ = ["StreamMonitorWorkflow"]

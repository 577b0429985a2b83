"""Activities: the I/O and decoding side. `StreamActivities(settings)` is what a worker registers."""

from .service import StreamActivities

__all__ = ["StreamActivities"]

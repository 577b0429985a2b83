"""The two ways reading a source fails; the activities turn them into Temporal errors."""


class UnreadableSourceError(Exception):
    """The source exists but is not media we can analyse, or does not exist at all."""


class MediaNotFoundError(UnreadableSourceError):
    """The address answered that it holds nothing there (HTTP 404/410, no such key or file). A live
    playlist's segment that answers so is skipped (a gap in its media), not a failure."""


class SourceUnavailableError(Exception):
    """The source could not be reached now (network, server); a retry may succeed."""

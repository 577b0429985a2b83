"""The two ways reading a source fails; the activities turn them into Temporal errors."""


class UnreadableSourceError(Exception):
    """The source exists but is not media we can analyse, or does not exist at all."""


class SourceUnavailableError(Exception):
    """The source could not be reached now (network, server); a retry may succeed."""

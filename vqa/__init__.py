"""VQA: stream quality monitoring on Temporal. Shared pieces: contracts, settings, dev server."""

"""The servers and media that tests and benchmarks share; not shipped in the wheel."""

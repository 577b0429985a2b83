"""What the user typed, validated into a StreamRequest before anything starts."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

import detectors
from vqa.contracts import StreamRequest

from .common import UsageError


def derive_stream_id(source: str) -> str:
    """A readable stream id from the source's file name, e.g. /data/talk60.mp4 -> talk60."""
    path = urlparse(source).path if "://" in source else source
    stem = Path(path.rstrip("/")).stem or "stream"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:80]
    return cleaned or "stream"


def hashed_id(stream_id: str, source: str) -> str:
    """The stream id of another source with the same file name: the name and a short hash of the source."""
    return f"{stream_id}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"


def normalise_source(source: str) -> str:
    """A local path is made absolute: the worker may run elsewhere; URLs stay as given."""
    if "://" in source:
        return source
    return os.path.abspath(source)


def _normalise_results(results: str | None) -> str | None:
    """A local results directory is made absolute here: the worker may run elsewhere."""
    if results is None or "://" in results or results.strip().lower() == "none":
        return results
    return os.path.abspath(results)


def _refuse_credentials(source: str, notify: str | None) -> None:
    for name, url in (("source", source), ("--notify", notify)):
        if url and "://" in url and "@" in urlparse(url).netloc:
            # What a workflow is started with stays in its history: credentials come from the worker's environment.
            raise UsageError(
                f"invalid {name}: a URL with credentials (user:password@) would be kept in the workflow's "
                "history; give the worker its credentials in its environment instead"
            )


def build_request(args: argparse.Namespace, source: str) -> StreamRequest:
    """Validate everything the user typed before anything starts."""
    _refuse_credentials(source, args.notify)
    try:
        names = detectors.resolve(_names(args.detectors) if args.detectors else [])
        options = _parse_set(args.set or [])
        detectors.parse_options(options)
        groups = _parse_groups(args.group or [])
        return StreamRequest(
            stream_id=args.stream_id or derive_stream_id(source),
            source=source,
            window_seconds=args.window_seconds,
            # With groups, the stream's own group is spelled out: what no group takes.
            detectors=names if args.detectors or groups else [],
            detector_groups=groups,
            options=options,
            windows_per_run=args.windows_per_run,
            parallel=args.parallel,
            renditions=_names(args.renditions) if getattr(args, "renditions", None) else [],
            results=_normalise_results(args.results),
            notify_url=args.notify,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc


def _names(value: str) -> list[str]:
    """`a, b,` -> ["a", "b"]."""
    return [n.strip() for n in value.split(",") if n.strip()]


def _parse_set(values: list[str]) -> dict[str, dict[str, Any]]:
    """`--set DETECTOR.OPTION=VALUE` (repeatable) -> {detector: {option: value}}; VALUE is JSON, else a string."""
    options: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot or not name or not field:
            raise UsageError(f"--set takes DETECTOR.OPTION=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(name, {})[field] = value
    return options


def _parse_groups(values: list[str]) -> dict[str, list[str]]:
    """`--group QUEUE=det1,det2` (repeatable) -> {queue: [detectors]}."""
    groups: dict[str, list[str]] = {}
    for value in values:
        queue, sep, names = value.partition("=")
        if not sep or not queue.strip() or not names.strip():
            raise UsageError(f"--group {value!r}: expected TASK_QUEUE=detector[,detector...]")
        if queue.strip() in groups:
            raise UsageError(f"--group {queue.strip()!r} given twice")
        groups[queue.strip()] = detectors.resolve(_names(names))
    return groups


def detector_names(value: str) -> list[str]:
    """`--detectors a,b` (the starter's and the worker's): resolved names; ValueError names the unknown ones."""
    return detectors.resolve(_names(value))

"""The activities one worker runs, as methods of one object built with the worker's settings
(the Temporal samples' pattern): nothing below reads the environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

import detectors
from vqa.contracts import (
    ANALYZE_WINDOW,
    NOTIFY_DEFECTS,
    PROBE_CHANNEL,
    PROBE_SOURCE,
    WATCH_MANIFESTS,
    WRITE_REPORT,
    ChannelInfo,
    ChannelProbeRequest,
    ManifestWatchRequest,
    ManifestWatchResult,
    MediaInfo,
    NotifyRequest,
    ProbeRequest,
    WindowRequest,
    WindowResult,
    WriteReportRequest,
)
from vqa.settings import Settings

from . import channel, manifest, notify, results, window


class StreamActivities:
    """`probe_source`, `probe_channel`, `analyze_window`, `write_report` and `notify_defects` for a worker.

    With `only_detectors`, the worker serves one detector group on its own task queue:
    it registers `analyze_window` alone, and refuses a window that asks for detectors
    outside the group, so a misrouted window fails loudly instead of running detectors
    the operator placed elsewhere.
    """

    def __init__(self, settings: Settings, *, only_detectors: list[str] | None = None) -> None:
        self.settings = settings
        self.only_detectors = detectors.resolve(only_detectors) if only_detectors else None

    @activity.defn(name=PROBE_SOURCE)
    def probe_source(self, request: ProbeRequest) -> MediaInfo:
        """Open the source and describe its tracks; fails non-retryably on bad input."""
        return window.probe_source(request, settings=self.settings)

    @activity.defn(name=PROBE_CHANNEL)
    def probe_channel(self, request: ChannelProbeRequest) -> ChannelInfo:
        """Read a master playlist's renditions (none: the source is one stream) and their health."""
        return channel.probe_channel(request, settings=self.settings)

    @activity.defn(name=WATCH_MANIFESTS)
    def watch_manifests(self, request: ManifestWatchRequest) -> ManifestWatchResult:
        """Watch a live channel's playlists until a manifest check opens or closes."""
        return manifest.watch_manifests(request, settings=self.settings)

    @activity.defn(name=ANALYZE_WINDOW)
    def analyze_window(self, request: WindowRequest) -> WindowResult:
        """Decode one window and run every enabled detector over it."""
        if self.only_detectors is not None:
            window.check_group(request, self.only_detectors)
        return window.analyze_window(request, settings=self.settings)

    @activity.defn(name=WRITE_REPORT)
    def write_report(self, request: WriteReportRequest) -> str | None:
        """Store the stream's report and its HTML page; returns the report's URI."""
        return results.write_report(request, settings=self.settings)

    @activity.defn(name=NOTIFY_DEFECTS)
    def notify_defects(self, request: NotifyRequest) -> int:
        """Deliver defect events to the webhook and the SNS topic."""
        return notify.notify_defects(request, settings=self.settings)

    def registered(self) -> list[Callable[..., Any]]:
        """What the worker registers: every activity, or a detector group's `analyze_window` alone."""
        if self.only_detectors is not None:
            return [self.analyze_window]
        return [
            self.probe_source, self.probe_channel, self.watch_manifests, self.analyze_window, self.write_report,
            self.notify_defects,
        ]

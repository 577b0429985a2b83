"""The data contracts shared by workflows, activities and detectors.

Every object that crosses a Temporal boundary (workflow input, activity input
and result, query answer, the final report) is one of these pydantic models.
They stay small: media never travels through Temporal, only the source's
address and the numbers measured on it.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Track = Literal["video", "audio", "av"]  # what a detector looks at
# Where a defect was seen (CONTRACT.md): video, audio (the first audio track), audio:N (the others,
# N counting audio tracks from 0), av, manifest (a playlist's health), ts (transport), captions.
DEFECT_TRACK_PATTERN = re.compile(r"^(video|audio(:[1-9][0-9]{0,2})?|av|manifest|ts|captions)$")
StreamState = Literal["probing", "running", "completed", "failed", "stopped"]
EventPhase = Literal["opened", "closed"]

STREAM_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
TASK_QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VideoInfo(_Model):
    codec: str
    width: int
    height: int
    fps: float


class AudioInfo(_Model):
    codec: str
    sample_rate: int
    channels: int
    index: int = Field(default=0, description="N of its track audio:N: its place among the source's audio tracks, from 0")
    language: str | None = Field(default=None, description="the track's language tag (ISO 639), when it has one")


class MediaInfo(_Model):
    """What the probe found in the source; times are on the stream's own timeline."""

    duration_s: float
    video: VideoInfo | None = None
    audio: AudioInfo | None = Field(default=None, description="the first audio track (defects on track audio)")
    audio_tracks: list[AudioInfo] = Field(
        default_factory=list, description="the other audio tracks, each analysed as its own track audio:N"
    )
    start_offset_s: float = Field(
        default=0.0,
        description="container timestamp of the stream's first frame or sample; subtracted from every time",
    )
    live: bool = Field(default=False, description="a live HLS playlist: it grows until #EXT-X-ENDLIST")


class Defect(_Model):
    """One defect event, as users see it in the report (CONTRACT.md)."""

    kind: str
    track: str = Field(description="video, audio, audio:N, av, manifest, ts or captions (DEFECT_TRACK_PATTERN)")
    start_s: float
    end_s: float
    duration_s: float
    value: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("track")
    @classmethod
    def _check_track(cls, value: str) -> str:
        if not DEFECT_TRACK_PATTERN.match(value):
            raise ValueError(f"unknown track {value!r}: video, audio, audio:N, av, manifest, ts or captions")
        return value


class DefectEvent(_Model):
    """A defect as a window reports it: opened (still going at the window's end) or closed.

    `id` is stable for the whole life of the event (kind, track and start), so the
    workflow can match the closing of an event with its opening windows earlier.
    """

    id: str
    phase: EventPhase
    defect: Defect


def event_id(kind: str, track: str, start_s: float) -> str:
    """An event's stable id: its kind, track and start (ms). The same wherever windows begin."""
    return f"{kind}:{track}:{round(start_s * 1000)}"


class RunEdge(_Model):
    """A run of a detector's condition that touches an edge of a self-contained window (one
    analysed without the state of the window before it, alongside others): it may go on in the
    window before (`at_start`) or after (`at_end`), so only the stitch, in window order, knows
    the whole event. Runs inside a window are events; runs at its edges are these, however short.
    """

    defect: Defect = Field(description="the run as this window saw it: start and end, value, details")
    run: str = Field("", description="which of the detector's runs (loudness: too_loud, too_quiet)")
    last_active_s: float = Field(description="when the condition last held in this window")
    value_total: float = Field(0.0, description="sum of the run's values (reported units for 'max')")
    value_count: int = 0
    reduce: Literal["mean", "max", "sum"] = "mean"
    min_duration_s: float = 0.0
    at_start: bool = Field(False, description="the condition held at the window's first observation")
    at_end: bool = Field(False, description="the condition still held at the window's end")
    start_print: str | None = Field(
        None, description="a thumbnail of what the run holds at the window's start (freeze: the held picture)"
    )
    end_print: str | None = Field(None, description="the same at the window's end")
    print_tolerance: float | None = Field(
        None, description="prints this close (mean absolute difference, levels) show one run going on"
    )
    announced: bool = Field(False, description="the stitch has announced it opened (it is long enough)")
    discard: bool = Field(False, description="not a defect, whatever it joins (a still-image programme's freeze)")


class Gating(_Model):
    """Momentary loudness blocks above -70 LUFS counted per 0.1 LU bin (bin i: -70 + 0.1 i LUFS):
    the EBU R128 integrated loudness of any stretch is computed from the sum of its windows' counts."""

    first_bin: int = 0
    counts: list[int] = Field(default_factory=list)


class WindowMetrics(_Model):
    """Per-window numbers a dashboard can plot; one value per measure, never per frame."""

    video_frames: int = 0
    # Decoded only as the reference of this window's last pictures (an open GOP's next keyframe):
    # the cost of a keyframe-aligned window beyond its own frames. 0 on closed GOPs.
    video_frames_dropped: int = 0
    audio_samples: int = 0
    measures: dict[str, float] = Field(default_factory=dict)


class WindowRequest(_Model):
    """Input of `analyze_window`: where to read, which part, and the detectors' carried state."""

    stream_id: str
    source: str
    index: int
    start_s: float
    end_s: float
    is_last: bool
    media: MediaInfo
    detectors: list[str]
    exclude_detectors: list[str] = Field(
        default_factory=list, description="detectors another group runs (on its own task queue) for this window"
    )
    group: str | None = Field(
        default=None, description="the detector group's task queue; None: the stream's own (default) group"
    )
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    states: dict[str, dict[str, Any]] = Field(default_factory=dict)
    results: str | None = Field(default=None, description="where the result is written; None: the worker's default")
    open_event_ids: list[str] = Field(
        default_factory=list, description="events earlier windows reported opened: their evidence is already written"
    )
    self_contained: bool = Field(
        default=False,
        description="analysed without the window before it (no carried state), alongside other windows: runs "
        "touching its edges come back as `edges` for the workflow to stitch",
    )


class WindowResult(_Model):
    index: int
    start_s: float
    end_s: float
    is_last: bool = False
    live_edge_s: float | None = None
    events: list[DefectEvent] = Field(default_factory=list)
    metrics: WindowMetrics = Field(default_factory=WindowMetrics)
    states: dict[str, dict[str, Any]] = Field(default_factory=dict)
    edges: list[RunEdge] = Field(default_factory=list, description="a self-contained window's runs at its edges")
    detectors: list[str] = Field(default_factory=list, description="the detectors that analysed the window")
    gating: Gating | None = Field(default=None, description="this window's momentary loudness blocks, for the stream's")
    notify_targets: bool = Field(
        default=True,
        description="the analysing worker has a notification target of its own (VQA_NOTIFY_URL or "
        "VQA_SNS_TOPIC_ARN); without one, and without the stream's notify_url, no delivery is scheduled",
    )


class ProbeRequest(_Model):
    source: str


class StreamProgress(_Model):
    """Everything a workflow run hands to the next one at continue-as-new."""

    media: MediaInfo
    next_index: int = 0
    windows_done: int = 0
    position_s: float = 0.0
    live_edge_s: float | None = None
    max_lag_s: float | None = None
    ended: bool = False
    runs: int = 1
    defects: list[Defect] = Field(default_factory=list)
    open_events: list[DefectEvent] = Field(default_factory=list)
    states: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pending_runs: list[RunEdge] = Field(
        default_factory=list, description="runs still going at the end of the last window stitched (parallel windows)"
    )
    gating: Gating = Field(default_factory=Gating)
    unused_evidence: list[str] = Field(
        default_factory=list,
        description="event ids of runs that began in a window (which wrote their evidence) and turned out "
        "too short once stitched: the report's writer removes that evidence",
    )
    stop_requested: bool = False
    notify_targets: bool = True  # as the last window's worker said (WindowResult.notify_targets)


class StreamRequest(_Model):
    """Input of `StreamMonitorWorkflow`. `detectors` empty means all of them."""

    stream_id: str
    source: str
    window_seconds: float = Field(default=10.0, gt=0, le=600)
    detectors: list[str] = Field(default_factory=list)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parallel: int = Field(
        default=4,
        ge=1,
        le=64,
        description="windows of a file or VOD playlist analysed at once (a live stream: always 1); the report "
        "is the same whatever it is",
    )
    windows_per_run: int = Field(
        default=500,
        ge=1,
        description="windows analysed before the workflow continues-as-new (it also does when Temporal suggests it)",
    )
    heartbeat_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="a window whose worker stops heartbeating this long is retried on another worker",
    )
    resume: StreamProgress | None = Field(
        default=None, description="set by continue-as-new: where the previous run of this stream stopped"
    )
    results: str | None = Field(
        default=None,
        description="where the report and window results go: a directory, s3://bucket/prefix or 'none'; "
        "None: the worker's default (VQA_RESULTS, else $VQA_HOME/results)",
    )
    notify_url: str | None = Field(
        default=None,
        description="webhook that receives each defect opened and closed (HTTP POST, HMAC-signed); "
        "None: the worker's default (VQA_NOTIFY_URL), if any",
    )
    notify_wait_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="at the stream's end, how long to wait for notifications still being retried",
    )
    detector_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="task queue -> detectors run there, one activity per group per window (each decodes its "
        "own window); the detectors in no group run on the stream's own task queue",
    )
    search_attributes: bool = Field(
        default=False,
        description="keep the stream's search attributes (vqa/search_attributes.py) up to date; the starter sets it "
        "when the namespace has them registered",
    )
    renditions: list[str] = Field(
        default_factory=list,
        description="a channel (HLS master playlist): the renditions decoded, by name, or 'lowest'/'highest' "
        "(of the video ladder); empty: all. Manifest checks always cover all",
    )
    channel: str | None = Field(
        default=None,
        description="set on a channel's child workflows: the channel's stream id (this stream is one of its renditions)",
    )
    channel_resume: ChannelProgress | None = Field(
        default=None, description="set by a channel's continue-as-new: where its previous run stopped"
    )

    @field_validator("detector_groups")
    @classmethod
    def _check_groups(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        for queue, names in value.items():
            if not TASK_QUEUE_PATTERN.match(queue):
                raise ValueError(f"detector group task queue {queue!r} is not a valid task queue name")
            if not names:
                raise ValueError(f"detector group {queue!r} names no detectors")
            twice = seen.intersection(names)
            if twice:
                raise ValueError(f"detector(s) {', '.join(sorted(twice))} are in more than one group")
            seen.update(names)
        return value

    @model_validator(mode="after")
    def _groups_within_detectors(self) -> StreamRequest:
        if self.detectors:
            outside = sorted({n for names in self.detector_groups.values() for n in names} - set(self.detectors))
            if outside:
                raise ValueError(f"detector group(s) name {', '.join(outside)}, which --detectors leaves out")
        return self

    @field_validator("notify_url")
    @classmethod
    def _check_notify_url(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme.lower() not in ("http", "https"):
            raise ValueError("notify_url must be an http:// or https:// URL")
        return value

    @field_validator("results")
    @classmethod
    def _check_results(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() == "none":
            return value
        parsed = urlparse(value)
        if "://" in value and parsed.scheme.lower() not in ("file", "s3"):
            raise ValueError("results must be a directory, a file:// URL, s3://bucket/prefix or 'none'")
        if parsed.scheme.lower() == "s3" and not parsed.netloc:
            raise ValueError("an S3 results location needs a bucket: s3://bucket/prefix")
        return value

    @field_validator("stream_id")
    @classmethod
    def _check_stream_id(cls, value: str) -> str:
        if not STREAM_ID_PATTERN.match(value):
            raise ValueError(
                "stream id must be 1-200 characters of letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            )
        return value


RenditionType = Literal["video", "audio"]
RENDITION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class RenditionInfo(_Model):
    """One rendition of a channel's ladder, as its master playlist lists it (CONTRACT.md, Channels)."""

    name: str = Field(description="unique in the channel: 720p, audio-en, ... (its child stream is ID.NAME)")
    uri: str
    type: RenditionType
    bandwidth: int | None = None
    width: int | None = None
    height: int | None = None
    language: str | None = None
    codecs: str | None = None


class ChannelProbeRequest(_Model):
    source: str


class ChannelInfo(_Model):
    """What `probe_channel` found: the renditions of a master playlist (none: the source is not a
    channel, analyse it as one stream), and the manifest problems seen while loading them."""

    renditions: list[RenditionInfo] = Field(default_factory=list)
    live: bool = False
    target_duration_s: float | None = None
    defects: list[Defect] = Field(default_factory=list, description="manifest_error defects found by the probe")


class PlaylistState(_Model):
    """What the manifest watch remembers of one rendition's live playlist between its polls."""

    name: str
    media_sequence: int | None = None
    segments: int = 0
    edge_s: float = 0.0  # the playlist's end on its own timeline when last read
    dated_edge: float | None = None  # epoch seconds of that end, when the playlist is dated
    changed_at: float | None = None  # epoch seconds of its last change (a new segment, a new sequence)
    checked_segment: str | None = None  # the newest segment whose availability was checked
    ended: bool = False


class ManifestWatchRequest(_Model):
    """Input of `watch_manifests`: a live channel's renditions, watched until something changes."""

    channel_id: str
    renditions: list[RenditionInfo]
    target_duration_s: float
    playlists: list[PlaylistState] = Field(default_factory=list)
    open_events: list[DefectEvent] = Field(default_factory=list)
    watch_s: float = Field(default=300.0, gt=0, description="return after this long even when nothing changed")
    poll_s: float | None = Field(default=None, description="between reloads; None: half the target duration (0.5-2 s)")


class ManifestWatchResult(_Model):
    playlists: list[PlaylistState]
    events: list[DefectEvent] = Field(default_factory=list, description="manifest_error events opened or closed")
    ended: bool = Field(False, description="every rendition's playlist has ended")


class RenditionStatus(_Model):
    """A channel's view of one rendition while it runs (its child workflow tells it)."""

    name: str
    type: RenditionType
    decoded: bool = True
    state: StreamState | Literal["pending", "skipped"] = "pending"
    position_s: float = 0.0
    live_edge_s: float | None = None
    open_defects: list[Defect] = Field(default_factory=list)
    error: str | None = None
    report: StreamReport | None = Field(
        default=None, description="the rendition's report, sent with its last status when it has ended"
    )


class ChannelProgress(_Model):
    """What a channel's workflow run hands to the next at continue-as-new (its renditions outlive its runs)."""

    info: ChannelInfo
    decoded: list[str]
    started: list[str] = Field(default_factory=list)
    renditions: list[RenditionStatus] = Field(default_factory=list)
    manifest_open: list[DefectEvent] = Field(default_factory=list)
    manifest_closed: list[Defect] = Field(default_factory=list)
    playlists: list[PlaylistState] = Field(default_factory=list)
    stop_requested: bool = False
    runs: int = 1


class StreamStatus(_Model):
    """Answer of the `status` query."""

    stream_id: str
    source: str
    state: StreamState
    position_s: float
    duration_s: float | None
    windows_done: int
    windows_total: int | None
    runs: int
    defects: list[Defect]
    open_defects: list[Defect]
    live: bool = False
    live_edge_s: float | None = None
    lag_s: float | None = Field(default=None, description="how far analysis is behind the live edge")
    renditions: list[RenditionStatus] = Field(default_factory=list, description="a channel: each rendition's state")


class StreamReport(_Model):
    """The result of one stream's analysis (CONTRACT.md, StreamReport)."""

    stream_id: str
    source: str
    status: Literal["completed", "failed", "stopped"]
    error: str | None = None
    media: MediaInfo | None = None
    window_seconds: float
    windows: int
    analysed_s: float | None = Field(
        default=None, description="how far the analysis got on the stream's timeline, s: the end of its last "
        "window, on a keyframe (a stopped or failed stream's is short of its duration)",
    )
    defects: list[Defect] = Field(default_factory=list)
    loudness_integrated_lufs: float | None = Field(
        default=None, description="EBU R128 integrated loudness of what was analysed (None: no audio, or all gated out)"
    )
    runs: int = Field(default=1, description="workflow runs the analysis took (it continues-as-new on long streams)")
    results_uri: str | None = Field(default=None, description="where this report was written (None: not written)")
    report_html_uri: str | None = Field(
        default=None, description="where its HTML view was written, beside results_uri (None: not written)"
    )
    live_edge_s: float | None = Field(
        default=None, description="a live stream: the end of its playlist when the analysis last looked, s"
    )
    max_lag_s: float | None = Field(
        default=None, description="a live stream: the furthest its analysis fell behind the live edge, s"
    )
    renditions: list[RenditionReport] = Field(
        default_factory=list, description="a channel: every rendition, with its own report when it was decoded"
    )

    @model_validator(mode="after")
    def _html_beside_json(self) -> StreamReport:
        """report.html is written beside report.json: its place follows from results_uri, so every
        copy of the report (the workflow's result, the stored JSON) says where it is."""
        if self.report_html_uri is None and (self.results_uri or "").endswith("report.json"):
            self.report_html_uri = (self.results_uri or "").removesuffix("report.json") + "report.html"
        return self


class RenditionReport(RenditionInfo):
    """A channel report's entry for one rendition: what the master playlist says, and its own report
    (None when `--renditions` left it out, or it could not be loaded: `error` says)."""

    report: StreamReport | None = None
    error: str | None = None


StreamReport.model_rebuild()
RenditionStatus.model_rebuild()
ChannelProgress.model_rebuild()
StreamStatus.model_rebuild()
StreamRequest.model_rebuild()


class WriteReportRequest(_Model):
    """Input of `write_report`: the final report and the stream's results location."""

    report: StreamReport
    results: str | None = None
    unused_evidence: list[str] = Field(default_factory=list, description="event ids whose evidence is to be removed")


class NotifyRequest(_Model):
    """Input of `notify_defects`: a few new events of one stream. The webhook secret and
    the SNS topic are the worker's settings and never travel through the workflow."""

    stream_id: str
    source: str
    url: str | None = Field(default=None, description="the stream's webhook; None: the worker's VQA_NOTIFY_URL")
    events: list[DefectEvent]


def notification_id(stream_id: str, event: DefectEvent) -> str:
    """The stable id receivers de-duplicate on: the same for every delivery and every retried window."""
    return f"{stream_id}/{event.id}/{event.phase}"


def workflow_id_for(stream_id: str) -> str:
    """The Temporal workflow id of a stream: one workflow per stream id."""
    return f"vqa-stream-{stream_id}"


# Activity names, so workflows can call activities without importing their
# modules (which pull in av and numpy).
PROBE_SOURCE = "probe_source"
PROBE_CHANNEL = "probe_channel"
WATCH_MANIFESTS = "watch_manifests"
ANALYZE_WINDOW = "analyze_window"
WRITE_REPORT = "write_report"
NOTIFY_DEFECTS = "notify_defects"

"""What crosses the Temporal boundary in the per-second design: small pydantic models.

Media never travels through Temporal here either: `convert_second` writes it to
S3 and hands on the objects' addresses, as the original media converter did.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vqa.contracts import DefectEvent, MediaInfo, StreamProgress, Track

CONVERT_SECOND = "convert_second"
DETECT_SECOND = "detect_second"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PerSecondRequest(_Model):
    """Input of `PerSecondWorkflow`."""

    stream_id: str
    source: str
    detectors: dict[str, Track] = Field(
        description="the detectors to run (those the product would run on this source), each with the track it reads"
    )
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    frames: str = Field(description="s3://bucket/prefix where each second's frames and audio are written")
    results: str | None = Field(default=None, description="where the report goes (the product's write_report)")
    live_heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, description="a live second waits for its media in convert_second, heartbeating"
    )
    seconds_per_run: int = Field(
        default=1800, ge=1, description="seconds before continue-as-new (a history stays well under its limits)"
    )
    resume: StreamProgress | None = None


class ConvertRequest(_Model):
    """Input of `convert_second`: one second of the source."""

    stream_id: str
    source: str
    media: MediaInfo
    index: int
    start_s: float
    end_s: float
    is_last: bool
    frames: str


class SecondObjects(_Model):
    """What `convert_second` wrote: one object per track read by some detector."""

    index: int
    start_s: float
    end_s: float
    is_last: bool
    live_edge_s: float | None = None
    objects: dict[str, str] = Field(default_factory=dict, description="'video' / 'audio' -> s3:// URI")
    video_frames: int = 0
    audio_samples: int = 0
    bytes_written: int = 0


class DetectRequest(_Model):
    """Input of `detect_second`: ONE detector over one second, with its state from the second before."""

    detector: str
    options: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] | None = None
    start_s: float
    end_s: float
    is_last: bool
    objects: dict[str, str] = Field(description="the objects of the tracks this detector reads")


class DetectResult(_Model):
    detector: str
    events: list[DefectEvent] = Field(default_factory=list)
    measures: dict[str, float] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)

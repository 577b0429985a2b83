"""A channel's manifest: the renditions an HLS master playlist lists, and their health.

`probe_channel` reads the source once. A DASH MPD (`.mpd`) is a channel too: each video
Representation a video rendition, each audio one an audio rendition (`_probe_dash`).
A master playlist (`#EXT-X-STREAM-INF`) is a
channel: each variant is a video rendition, each `#EXT-X-MEDIA` audio rendition with a
URI an audio rendition, every one named (`720p`, `audio-en`) and loaded once, so a
rendition the master lists but that cannot be loaded is a `manifest_error`
(`rendition_missing`) and a VOD segment longer than the target duration is one too
(`target_duration`). Anything else (a media playlist, a file) has no renditions: the
workflow analyses it as one stream. The master is parsed by the `m3u8` package.
"""

from __future__ import annotations

import re
from collections import Counter

import m3u8
from temporalio.exceptions import ApplicationError

from vqa.contracts import ChannelInfo, ChannelProbeRequest, Defect, RenditionInfo
from vqa.settings import Settings

from .errors import SourceUnavailableError, UnreadableSourceError
from .policy import SourcePolicy, SourceRefusedError
from .sources import dash
from .sources.hls import Playlist, is_hls, load_playlist
from .sources.transports import read_bytes, resolve


def manifest_error(check: str, start_s: float, end_s: float, *, value: float | None = None, **details: object) -> Defect:
    """A `manifest_error` defect (track `manifest`) of one check."""
    return Defect(
        kind="manifest_error", track="manifest", start_s=round(start_s, 3), end_s=round(end_s, 3),
        duration_s=round(max(0.0, end_s - start_s), 3), value=value, details={"check": check, **details},
    )


def probe_channel(request: ChannelProbeRequest, *, settings: Settings | None = None) -> ChannelInfo:
    """The renditions of `request.source` if it is a master playlist (else none), each loaded once."""
    settings = settings if settings is not None else Settings()
    is_mpd = dash.is_dash(request.source) and dash.split_address(request.source)[1] is None
    if not is_hls(request.source) and not is_mpd:
        return ChannelInfo()  # a DASH Representation (`#representation=`) is one stream
    try:
        return _probe_dash(request.source, settings) if is_mpd else _probe(request.source, settings)
    except SourceRefusedError as exc:
        raise ApplicationError(str(exc), type="SourceRefused", non_retryable=True) from exc
    except UnreadableSourceError as exc:
        raise ApplicationError(str(exc), type="UnreadableSource", non_retryable=True) from exc
    except SourceUnavailableError as exc:
        raise ApplicationError(str(exc), type="SourceUnavailable") from exc


def _probe(source: str, settings: Settings) -> ChannelInfo:
    policy = SourcePolicy.from_settings(settings)
    text = read_bytes(source, what="source", policy=policy, settings=settings).decode("utf-8", "replace")
    if "#EXT-X-STREAM-INF" not in text:
        return ChannelInfo()
    renditions = master_renditions(text, source)
    for rendition in renditions:
        policy.check_reference(rendition.uri, referrer=source, what="HLS rendition playlist")
    info = ChannelInfo(renditions=renditions)
    for rendition in renditions:
        try:
            playlist = load_playlist(rendition.uri, what="HLS rendition playlist", policy=policy, settings=settings)
        except (UnreadableSourceError, SourceUnavailableError) as exc:
            info.defects.append(manifest_error("rendition_missing", 0.0, 0.0, renditions=[rendition.name], error=str(exc)))
            continue
        info.live = info.live or not playlist.ended
        info.target_duration_s = max(info.target_duration_s or 0.0, playlist.target_duration_s)
        if playlist.ended:
            info.defects += long_segments(playlist, rendition.name)
    return info


def _probe_dash(source: str, settings: Settings) -> ChannelInfo:
    """An MPD's renditions: each video Representation (`720p`) and each audio one (`audio-en`),
    addressed `<mpd>#representation=ID`; one whose segments cannot be listed is `rendition_missing`."""
    policy = SourcePolicy.from_settings(settings)
    manifest = dash.load_manifest(source, policy=policy, settings=settings)
    listed = [r for r in manifest.representations if r.type in ("video", "audio")]
    renditions = _unique_names([
        RenditionInfo(
            name=(f"{r.height}p" if r.height else "video") if r.type == "video"
            else f"audio-{r.language or r.id}",
            uri=dash.address(source, r.id), type=r.type, bandwidth=r.bandwidth,  # type: ignore[arg-type]
            width=r.width if r.type == "video" else None, height=r.height if r.type == "video" else None,
            language=r.language if r.type == "audio" else None, codecs=r.codecs,
        )
        for r in listed
    ])
    info = ChannelInfo(renditions=renditions, live=manifest.live)
    for rendition, representation in zip(renditions, listed):
        if representation.playlist is None or (not representation.playlist.segments and not manifest.live):
            error = representation.error or f"DASH Representation {representation.id!r} lists no segment"
            info.defects.append(manifest_error("rendition_missing", 0.0, 0.0, renditions=[rendition.name], error=error))
            continue
        info.target_duration_s = max(info.target_duration_s or 0.0, representation.playlist.target_duration_s)
    return info


def long_segments(playlist: Playlist, name: str) -> list[Defect]:
    """Segments longer than the target duration (RFC 8216: EXTINF rounded to the nearest integer
    must not exceed it), one defect per run of them."""
    target = playlist.target_duration_s
    found: list[Defect] = []
    for segment in playlist.segments:
        if round(segment.duration_s) <= target:
            continue
        last = found[-1] if found else None
        if last is not None and abs(last.end_s - segment.start_s) < 1e-3:
            found[-1] = manifest_error(
                "target_duration", last.start_s, segment.end_s, value=max(last.value or 0.0, segment.duration_s),
                renditions=[name], target_duration_s=target,
            )
        else:
            found.append(manifest_error(
                "target_duration", segment.start_s, segment.end_s, value=segment.duration_s,
                renditions=[name], target_duration_s=target,
            ))
    return found


def master_renditions(text: str, uri: str) -> list[RenditionInfo]:
    """The video variants and the audio renditions (with a URI of their own) of a master playlist.
    A variant that is only an audio rendition again (FFmpeg's muxer lists them so) is that rendition."""
    master = m3u8.loads(text)
    audio = [m for m in master.media if (m.type or "").upper() == "AUDIO" and m.uri]
    audio_uris = {resolve(uri, m.uri) for m in audio}
    renditions: list[RenditionInfo] = []
    for variant in master.playlists:
        info = variant.stream_info
        variant_uri = resolve(uri, variant.uri)
        if variant_uri in audio_uris or (not info.resolution and _audio_only(info.codecs)):
            continue
        width, height = info.resolution if info.resolution else (None, None)
        renditions.append(RenditionInfo(
            name=f"{height}p" if height else "video", uri=variant_uri, type="video",
            bandwidth=info.bandwidth, width=width, height=height, codecs=info.codecs,
        ))
    seen: set[str] = set()
    for media in audio:
        media_uri = resolve(uri, media.uri)
        if media_uri in seen:
            continue  # one audio playlist in several groups: one rendition
        seen.add(media_uri)
        label = f"audio-{media.language}" if media.language else f"audio-{media.name or len(seen)}"
        renditions.append(RenditionInfo(name=label, uri=media_uri, type="audio", language=media.language))
    return _unique_names(renditions)


def _audio_only(codecs: str | None) -> bool:
    """CODECS that name only audio formats (mp4a, ac-3, ec-3, opus, flac)."""
    names = [c.strip().split(".")[0].lower() for c in (codecs or "").split(",") if c.strip()]
    return bool(names) and all(n in ("mp4a", "ac-3", "ec-3", "opus", "flac", "alac") for n in names)


def _unique_names(renditions: list[RenditionInfo]) -> list[RenditionInfo]:
    """Names made safe for a stream id, and unique: `720p`, `720p-2`, ..."""
    cleaned = [re.sub(r"[^A-Za-z0-9_-]+", "-", r.name).strip("-")[:56] or r.type for r in renditions]
    totals, counts = Counter(cleaned), Counter[str]()
    named = []
    for rendition, name in zip(renditions, cleaned):
        counts[name] += 1
        unique = name if totals[name] == 1 else f"{name}-{counts[name]}"
        named.append(rendition.model_copy(update={"name": unique}))
    return named

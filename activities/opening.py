"""Handing a source to FFmpeg: the allow-list of demuxers, and its failures worded.

The openers of activities/sources/ (one per scheme) give FFmpeg `options()` and
open inside `ffmpeg_errors`, which raises `UnreadableSourceError` (the input itself
is bad; a refused format is named as FFmpeg probes it) or `SourceUnavailableError`
(it could not be reached just now).
"""

from __future__ import annotations

import ctypes
import glob
import os
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import av
import av.error

from .errors import SourceUnavailableError, UnreadableSourceError
from .policy import SourceRefusedError

# The demuxers a source may be read with, by FFmpeg's name (any name of a demuxer that has
# several): containers and elementary streams that read their own input and nothing else.
# FFmpeg is given this list as `format_whitelist`, so avformat_open_input refuses any other
# format it probes (EINVAL) before the demuxer's read_header runs: an image sequence, a
# playlist or manifest, a session description, a device never opens anything. A demuxer
# a newer FFmpeg adds is refused until it is added here. HLS is read by hls.py, each URL
# checked by the policy; its segments are opened with format="mpegts" forced.
ALLOWED_DEMUXERS = frozenset({
    # containers
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2 (data references off: enable_drefs=0, use_absolute_path=0)
    "matroska",  # matroska,webm
    "mpegts", "mpeg", "avi", "flv", "live_flv", "mxf", "asf", "nut", "dv", "gxf", "rm", "ogg", "wtv",
    # elementary video streams
    "h264", "hevc", "vvc", "mpegvideo", "m4v", "h263", "vc1", "dirac", "av1", "obu", "ivf",
    "yuv4mpegpipe", "mjpeg", "mpjpeg",
    # audio
    "wav", "w64", "aiff", "caf", "au", "mp3", "flac", "aac", "loas", "ac3", "eac3", "dts", "dtshd",
    "truehd", "mlp", "amr", "wv", "ape", "tta", "tak", "mpc", "mpc8",
})
_FORMAT_WHITELIST = ",".join(sorted(ALLOWED_DEMUXERS))
# Options of allowed demuxers that would open other files: off (FFmpeg's defaults, made explicit).
_NO_OTHER_FILES = {"enable_drefs": "0", "use_absolute_path": "0"}  # mov: external data references

# Demuxers that open other files, URLs or devices on their own, and what they read; refused
# like every demuxer not allowed above, this only words the refusal.
FILE_OPENING_DEMUXERS = {
    "image2": "image sequence / pattern",
    "concat": "ffconcat list",
    "hls": "HLS playlist",
    "applehttp": "HLS playlist",
    "dash": "DASH manifest",
    "imf": "IMF composition playlist",
    "sdp": "SDP session description",
    "rtsp": "RTSP session",
    "rtp": "RTP session",
    "sap": "SAP announcement",
    "lavfi": "lavfi filter graph",
    "mlv": "Magic Lantern video, whose chunks are sibling files",
    "vobsub": "VobSub index, whose pictures are in a sibling .sub file",
    "video4linux2": "capture device",
    "v4l2": "capture device",
    "alsa": "capture device",
    "oss": "capture device",
    "fbdev": "capture device",
    "kmsgrab": "capture device",
    "x11grab": "capture device",
}
_PLAYLISTS = {"concat", "hls", "applehttp", "dash", "imf", "sdp"}


# A source's first bytes and MIME type (None: unknown), `n` of them at most.
Head = Callable[[int], tuple[bytes, str | None]]


def options() -> dict[str, str]:
    """The options every source is opened with: only the allowed demuxers, nothing else opened."""
    return {"format_whitelist": _FORMAT_WHITELIST, **_NO_OTHER_FILES}


@contextmanager
def ffmpeg_errors(
    target: str, *, timeout_s: float, refused: Callable[[], tuple[str, str] | None],
    explain: Callable[[], str | None] | None = None,
) -> Iterator[None]:
    """FFmpeg's failures to open `target` as the source errors. `refused`: the format FFmpeg
    probed when it refused one (see `_refused_format`); `explain`: why a failure FFmpeg words
    only vaguely happened, when that can be told (an https server's certificate)."""
    try:
        yield
    except av.error.FileNotFoundError as exc:
        raise UnreadableSourceError(f"source not found: {target}") from exc
    except av.error.InvalidDataError as exc:
        raise UnreadableSourceError(f"not a readable media file: {target} ({exc.strerror})") from exc
    except av.error.HTTPNotFoundError as exc:
        raise UnreadableSourceError(f"source not found (HTTP 404): {target}") from exc
    except av.error.HTTPClientError as exc:
        raise UnreadableSourceError(f"source refused by the server: {target} ({exc.strerror})") from exc
    except av.error.ArgumentError as exc:
        # What a format outside ALLOWED_DEMUXERS gets, before the demuxer read anything.
        raise UnreadableSourceError(_refusal(target, refused())) from exc
    except (av.error.HTTPServerError, av.error.ConnectionRefusedError, av.error.ConnectionResetError) as exc:
        raise SourceUnavailableError(f"source unavailable: {target} ({exc.strerror})") from exc
    except (av.error.TimeoutError, TimeoutError, av.error.ExitError) as exc:
        # ExitError: PyAV's open timeout interrupted a server that accepted and never answered.
        raise SourceUnavailableError(f"source did not answer within {timeout_s:g}s: {target}") from exc
    except av.error.FFmpegError as exc:
        why = explain() if explain is not None else None
        raise UnreadableSourceError(f"cannot open {target}: {why or exc.strerror}") from exc
    except OSError as exc:
        raise SourceUnavailableError(f"cannot read {target}: {exc}") from exc


_SAID_LETTER_BY_LETTER = {"hls", "sdp", "mlv", "rtsp", "rtp", "sap"}  # an HLS playlist
_PLAYLIST_HINT = "a playlist or manifest naming other files is not followed; an HLS source must be an .m3u8 URL"


def _refusal(target: str, refused: tuple[str, str] | None) -> str:
    """The message for a source whose probed format is not in ALLOWED_DEMUXERS."""
    if refused is None:
        return f"not a readable media file: {target} (its format is not one VQA reads; {_PLAYLIST_HINT})"
    name, long_name = refused
    names = name.split(",")
    what = next((FILE_OPENING_DEMUXERS[n] for n in names if n in FILE_OPENING_DEMUXERS), None)
    article = "an" if names[0][0] in "aeiou" or names[0] in _SAID_LETTER_BY_LETTER else "a"
    if what is None:
        return f"not a readable media file: {target} is {article} {names[0]} ({long_name}) input, which VQA does not read"
    message = f"not a readable media file: {target} is {article} {names[0]} ({what}) input, which VQA does not read: it would open other files"
    return f"{message} ({_PLAYLIST_HINT})" if _PLAYLISTS.intersection(names) else message


_PROBE_BYTES = 1 << 20
_AVPROBE_SCORE_RETRY = 25  # FFmpeg's AVPROBE_SCORE_RETRY
_AVPROBE_PADDING_SIZE = 64  # at least FFmpeg's AVPROBE_PADDING_SIZE (32)


class _ProbeData(ctypes.Structure):  # FFmpeg's AVProbeData
    _fields_ = [("filename", ctypes.c_char_p), ("buf", ctypes.c_void_p), ("buf_size", ctypes.c_int),
                ("mime_type", ctypes.c_char_p)]


def _probe_function() -> Callable[..., Any] | None:
    """libavformat's av_probe_input_format2, from the library PyAV loaded; None where it cannot be found."""
    package = os.path.dirname(av.__file__)
    candidates = sorted(glob.glob(os.path.join(os.path.dirname(package), "av.libs", "libavformat*")))
    candidates += sorted(glob.glob(os.path.join(package, ".dylibs", "libavformat*")))
    try:
        with open("/proc/self/maps") as maps:
            candidates += sorted({line.split()[-1] for line in maps if "libavformat" in line and "/" in line})
    except OSError:
        pass
    for path in candidates:
        try:
            function = ctypes.CDLL(path).av_probe_input_format2
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.POINTER(ctypes.c_char_p)  # AVInputFormat starts with name, long_name
        function.argtypes = [ctypes.POINTER(_ProbeData), ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        return function  # type: ignore[no-any-return]
    return None


def _refused_format(scheme: str, name: str, head: Head | None = None) -> tuple[str, str] | None:
    """(name, long name) of the format FFmpeg probed for a refused source, found as
    avformat_open_input finds it (by the name alone for demuxers that open their own input,
    then from the first bytes, `head`: default, the local file `name`) but by FFmpeg's probe
    functions only: no demuxer runs, and nothing but the source itself is read. An S3 object
    (`scheme` "s3": a custom IO) is probed by its bytes only. None when that cannot be told."""
    probe_format = _probe_function()
    if probe_format is None:
        return None

    def probed(data: bytes, opened: int, mime: str | None, score: int) -> tuple[str, str] | None:
        buffer = ctypes.create_string_buffer(data + bytes(_AVPROBE_PADDING_SIZE), len(data) + _AVPROBE_PADDING_SIZE)
        request = _ProbeData(name.encode(errors="replace"), ctypes.cast(buffer, ctypes.c_void_p), len(data),
                             mime.encode(errors="replace") if mime else None)
        found = probe_format(ctypes.byref(request), opened, ctypes.byref(ctypes.c_int(score)))
        if not found:
            return None
        return (found[0] or b"?").decode(errors="replace"), (found[1] or b"").decode(errors="replace")

    if scheme != "s3":  # a custom IO (S3) is probed by its bytes only
        by_name = probed(b"", 0, None, _AVPROBE_SCORE_RETRY)
        if by_name:
            return by_name
    try:
        data, mime = (head or _local_head(name))(_PROBE_BYTES)
    except (OSError, ValueError, urllib.error.URLError, SourceRefusedError):
        return None
    size = 2048  # as av_probe_input_buffer2: more bytes until a format is sure enough, then any
    while True:
        last = size >= len(data)
        found = probed(data[:size], 1, mime, 0 if last else _AVPROBE_SCORE_RETRY)
        if found or last:
            return found
        size *= 2


def _local_head(path: str) -> Head:
    def head(n: int) -> tuple[bytes, str | None]:
        with open(path, "rb") as file:
            return file.read(n), None

    return head

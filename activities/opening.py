"""Opening a source for PyAV: the allow-list of demuxers, local files, http(s) with every
address checked and pinned, S3 objects read by ranged GETs, HLS segments as one stream.

Failures are raised as `UnreadableSourceError` (the input itself is bad) or
`SourceUnavailableError` (it could not be reached just now).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

import av
import av.error


# How long a network source may stay silent before the read fails (retryably).
NETWORK_TIMEOUT_US = int(float(os.environ.get("VQA_NETWORK_TIMEOUT_S", "15")) * 1_000_000)

from . import hls, policy  # noqa: E402


def _ca_file() -> str | None:
    """The CA bundle TLS connections are verified against (SSL_CERT_FILE, else the system's)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


from .errors import SourceUnavailableError, UnreadableSourceError  # noqa: E402 - re-exported

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


def _open(source: str) -> av.container.InputContainer:
    parsed = urlparse(source)
    scheme = parsed.scheme.lower()
    options: dict[str, str] = {"format_whitelist": _FORMAT_WHITELIST, **_NO_OTHER_FILES}
    local = scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")
    if local or scheme in ("http", "https", "s3"):
        policy.current().check_source(source)  # the worker's allow-list: refusals are final
    if local:
        target = unquote(parsed.path) if scheme == "file" else source
        real = policy.current().local_path(source)
        if not os.path.exists(real):
            raise UnreadableSourceError(f"source not found: {target}")
        if os.path.isdir(real):
            raise UnreadableSourceError(f"source is a directory, not a media file: {target}")
        if os.path.getsize(real) == 0:
            raise UnreadableSourceError(f"source is an empty file: {target}")
        options["protocol_whitelist"] = "file"
    elif scheme in ("http", "https"):
        target = source
        options |= {
            "timeout": str(NETWORK_TIMEOUT_US),
            "rw_timeout": str(NETWORK_TIMEOUT_US),
            "protocol_whitelist": "http,https,tcp,tls",
            "max_redirects": "0",  # each redirect is checked by the policy first (_open_http)
        }
        if scheme == "https":
            # FFmpeg accepts any certificate unless told to verify: check it against the CAs
            # Python trusts (SSL_CERT_FILE, else the system bundle), as HLS playlists are.
            options["tls_verify"] = "1"
            ca_file = _ca_file()
            if ca_file:
                options["ca_file"] = ca_file
    elif scheme == "s3":
        from .s3 import open_object  # boto3 is loaded where S3 is read

        target = source
        s3_object = open_object(source)  # ranged GETs: the object is never copied whole
    else:
        raise UnreadableSourceError(f"unsupported source scheme {scheme!r} in {source}")
    try:
        if scheme == "s3":
            return av.open(s3_object, mode="r", options=options, timeout=NETWORK_TIMEOUT_US / 1e6)
        if not local:
            return _open_http(source, options)
        return av.open(real, mode="r", options=options, timeout=NETWORK_TIMEOUT_US / 1e6)
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
        refused = _refused_format(scheme, real if local else source, s3_object if scheme == "s3" else None)
        raise UnreadableSourceError(_refusal(target, refused)) from exc
    except (av.error.HTTPServerError, av.error.ConnectionRefusedError, av.error.ConnectionResetError) as exc:
        raise SourceUnavailableError(f"source unavailable: {target} ({exc.strerror})") from exc
    except (av.error.TimeoutError, TimeoutError, av.error.ExitError) as exc:
        # ExitError: PyAV's open timeout interrupted a server that accepted and never answered.
        raise SourceUnavailableError(
            f"source did not answer within {NETWORK_TIMEOUT_US / 1e6:g}s: {target}"
        ) from exc
    except av.error.FFmpegError as exc:
        untrusted = _untrusted_certificate(source) if scheme == "https" else None
        if untrusted:
            raise UnreadableSourceError(f"cannot open {target}: {untrusted}") from exc
        raise UnreadableSourceError(f"cannot open {target}: {exc.strerror}") from exc
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


def _refused_format(scheme: str, name: str, s3_object: Any = None) -> tuple[str, str] | None:
    """(name, long name) of the format FFmpeg probed for a refused source, found as
    avformat_open_input finds it (by the name alone for demuxers that open their own input,
    then from the first bytes) but by FFmpeg's probe functions only: no demuxer runs, and
    nothing but the source itself is read. None when that cannot be told."""
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
    mime = None
    try:
        if scheme == "s3":
            s3_object.seek(0)
            data = s3_object.read(_PROBE_BYTES)
        elif scheme in ("http", "https"):
            request = urllib.request.Request(name, headers={"Range": f"bytes=0-{_PROBE_BYTES - 1}", "User-Agent": "vqa"})
            with policy.current().urlopen(request, timeout=NETWORK_TIMEOUT_US / 1e6, what="source") as response:
                mime = response.headers.get_content_type() if response.headers.get("Content-Type") else None
                data = response.read(_PROBE_BYTES)
        else:
            with open(name, "rb") as file:
                data = file.read(_PROBE_BYTES)
    except (OSError, ValueError, urllib.error.URLError, policy.SourceRefusedError):
        return None
    size = 2048  # as av_probe_input_buffer2: more bytes until a format is sure enough, then any
    while True:
        last = size >= len(data)
        found = probed(data[:size], 1, mime, 0 if last else _AVPROBE_SCORE_RETRY)
        if found or last:
            return found
        size *= 2


def _untrusted_certificate(source: str) -> str | None:
    """Why an https server's certificate fails verification, if it does (FFmpeg only says
    "Input/output error"); None when it verifies or the check itself cannot connect."""
    parsed = urlparse(source)
    host, port = parsed.hostname or "", parsed.port or 443
    context = ssl.create_default_context(cafile=_ca_file())
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            # The address connected to passes the policy, as FFmpeg's did, before any byte is sent.
            policy.current().check_address(raw.getpeername()[0].split("%")[0], url=source, what="source")
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        return f"the server's TLS certificate is not trusted ({exc.verify_message}; a private CA goes in SSL_CERT_FILE)"
    except (OSError, policy.SourceRefusedError):
        return None


def _open_http(source: str, options: dict[str, str]) -> av.container.InputContainer:
    """Open an http(s) source with FFmpeg, which only ever reaches addresses the policy checked.

    Plain http connects to the checked address (the host name goes in the Host header),
    so a second DNS answer cannot differ (DNS rebinding). FFmpeg follows no redirect:
    when it stops at one, the policy's client follows it, checking every hop, and
    FFmpeg opens where it led.
    """
    checks = policy.current()
    url, what = source, "source"
    for attempt in range(2):
        addresses = checks.check_host(url, what=what)
        try:
            return _open_pinned(url, addresses, options)
        except av.error.OSError as exc:
            if attempt or exc.errno != errno.EIO:  # EIO: what FFmpeg says at a redirect it may not follow
                raise
            final = _redirect_target(checks, url)
            if final is None or final == url:
                raise
            what = f"source (redirected from {source})"
            if urlparse(final).scheme.lower() not in ("http", "https"):
                raise policy.SourceRefusedError(f"{what} refused: {policy.redact(final)} is not an http(s) URL") from exc
            checks.check_source(final, what=what)
            url = final
    raise AssertionError("unreachable")


def _open_pinned(url: str, addresses: list[policy.IPAddress], options: dict[str, str]) -> av.container.InputContainer:
    """FFmpeg on `url` pinned to each checked address in turn, as its own connect would, while
    an address cannot be reached at all."""
    for i, address in enumerate(addresses):
        target, extra = _pinned(url, address)
        try:
            return av.open(target, mode="r", options=options | extra, timeout=NETWORK_TIMEOUT_US / 1e6)
        except av.error.FFmpegError as exc:
            if target == url or i == len(addresses) - 1 or exc.errno not in _UNREACHABLE:
                raise
    raise AssertionError("check_host returns at least one address")


_UNREACHABLE = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


def _pinned(url: str, address: policy.IPAddress) -> tuple[str, dict[str, str]]:
    """The URL FFmpeg opens and its extra options: plain http goes to `address`, named in Host."""
    parsed = urlparse(url)
    if parsed.scheme.lower() != "http" or parsed.hostname == str(address):
        return url, {}  # https: the name is needed for TLS (SNI); an address literal is already pinned
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return parsed._replace(netloc=netloc).geturl(), {"headers": f"Host: {parsed.netloc}\r\n"}


def _redirect_target(checks: policy.SourcePolicy, url: str) -> str | None:
    """Where `url` redirects to, every hop checked; None when it cannot be asked."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0", "User-Agent": "vqa"})
    try:
        with checks.urlopen(request, timeout=NETWORK_TIMEOUT_US / 1e6, what="source") as response:
            return str(response.geturl())
    except urllib.error.HTTPError as exc:
        return str(exc.geturl())
    except (urllib.error.URLError, OSError):
        return None


def _open_hls(segments: list[hls.HlsSegment], source: str) -> av.container.InputContainer:
    if not segments:
        raise SourceUnavailableError(f"the playlist lists no segments yet: {source}")
    # Fragmented MP4 (CMAF): the init segment then the fragments, through the mov demuxer; the
    # stream is not seekable, so it never looks for an index at the end (times: each tfdt).
    fmp4 = segments[0].init is not None
    try:
        return av.open(hls.SegmentStream(segments), mode="r", format="mp4" if fmp4 else "mpegts")
    except av.error.FFmpegError as exc:
        kind = "fragmented MP4" if fmp4 else "MPEG-TS"
        raise UnreadableSourceError(f"HLS segments of {source} are not readable {kind}: {exc.strerror}") from exc


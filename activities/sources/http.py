"""http(s) sources: FFmpeg reaches only addresses the policy checked (pinned, each redirect
followed by the policy's client); playlists and segments are read with that client."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import urllib.error
import urllib.request
from urllib.parse import urljoin, urlparse

import av
import av.container
import av.error

from vqa.settings import Settings

from ..errors import MediaNotFoundError, SourceUnavailableError, UnreadableSourceError
from ..opening import Head, _refused_format, ffmpeg_errors, options
from ..policy import IPAddress, SourcePolicy, SourceRefusedError, redact
from .base import ByteRange, SourceRequest, Transport

_UNREACHABLE = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


def ca_file(settings: Settings) -> str | None:
    """The CA bundle TLS connections are verified against (SSL_CERT_FILE, else the system's)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (settings.ssl_cert_file, paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def open_container(request: SourceRequest) -> av.container.InputContainer:
    source, timeout_us = request.url, str(int(request.timeout_s * 1_000_000))
    ffmpeg_options = options() | {
        "timeout": timeout_us,
        "rw_timeout": timeout_us,
        "protocol_whitelist": "http,https,tcp,tls",
        "max_redirects": "0",  # each redirect is checked by the policy first (_open_checked)
    }
    https = urlparse(source).scheme.lower() == "https"
    if https:
        # FFmpeg accepts any certificate unless told to verify: check it against the CAs
        # Python trusts (SSL_CERT_FILE, else the system bundle), as HLS playlists are.
        ffmpeg_options["tls_verify"] = "1"
        trusted = ca_file(request.settings)
        if trusted:
            ffmpeg_options["ca_file"] = trusted
    with ffmpeg_errors(
        source, timeout_s=request.timeout_s, refused=lambda: _refused_format("http", source, _head(request)),
        explain=(lambda: _untrusted_certificate(request)) if https else None,
    ):
        return _open_checked(request, ffmpeg_options)


def _head(request: SourceRequest) -> Head:
    def head(n: int) -> tuple[bytes, str | None]:
        ranged = urllib.request.Request(request.url, headers={"Range": f"bytes=0-{n - 1}", "User-Agent": "vqa"})
        with request.policy.urlopen(ranged, timeout=request.timeout_s, what="source") as response:
            mime = response.headers.get_content_type() if response.headers.get("Content-Type") else None
            return response.read(n), mime

    return head


def _untrusted_certificate(request: SourceRequest) -> str | None:
    """Why an https server's certificate fails verification, if it does (FFmpeg only says
    "Input/output error"); None when it verifies or the check itself cannot connect."""
    parsed = urlparse(request.url)
    host, port = parsed.hostname or "", parsed.port or 443
    context = ssl.create_default_context(cafile=ca_file(request.settings))
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            # The address connected to passes the policy, as FFmpeg's did, before any byte is sent.
            request.policy.check_address(raw.getpeername()[0].split("%")[0], url=request.url, what="source")
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        return f"the server's TLS certificate is not trusted ({exc.verify_message}; a private CA goes in SSL_CERT_FILE)"
    except (OSError, SourceRefusedError):
        return None


def _open_checked(request: SourceRequest, ffmpeg_options: dict[str, str]) -> av.container.InputContainer:
    """Open an http(s) source with FFmpeg, which only ever reaches addresses the policy checked.

    Plain http connects to the checked address (the host name goes in the Host header),
    so a second DNS answer cannot differ (DNS rebinding). FFmpeg follows no redirect:
    when it stops at one, the policy's client follows it, checking every hop, and
    FFmpeg opens where it led.
    """
    checks, source = request.policy, request.url
    url, what = source, "source"
    for attempt in range(2):
        addresses = checks.check_host(url, what=what)
        try:
            return _open_pinned(url, addresses, ffmpeg_options, request.timeout_s)
        except av.error.OSError as exc:
            if attempt or exc.errno != errno.EIO:  # EIO: what FFmpeg says at a redirect it may not follow
                raise
            final = _redirect_target(checks, url, request.timeout_s)
            if final is None or final == url:
                raise
            what = f"source (redirected from {source})"
            if urlparse(final).scheme.lower() not in ("http", "https"):
                raise SourceRefusedError(f"{what} refused: {redact(final)} is not an http(s) URL") from exc
            checks.check_source(final, what=what)
            url = final
    raise AssertionError("unreachable")


def _open_pinned(
    url: str, addresses: list[IPAddress], ffmpeg_options: dict[str, str], timeout_s: float
) -> av.container.InputContainer:
    """FFmpeg on `url` pinned to each checked address in turn, as its own connect would, while
    an address cannot be reached at all."""
    for i, address in enumerate(addresses):
        target, extra = _pinned(url, address)
        try:
            return av.open(target, mode="r", options=ffmpeg_options | extra, timeout=timeout_s)
        except av.error.FFmpegError as exc:
            if target == url or i == len(addresses) - 1 or exc.errno not in _UNREACHABLE:
                raise
    raise AssertionError("check_host returns at least one address")


def _pinned(url: str, address: IPAddress) -> tuple[str, dict[str, str]]:
    """The URL FFmpeg opens and its extra options: plain http goes to `address`, named in Host."""
    parsed = urlparse(url)
    if parsed.scheme.lower() != "http" or parsed.hostname == str(address):
        return url, {}  # https: the name is needed for TLS (SNI); an address literal is already pinned
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return parsed._replace(netloc=netloc).geturl(), {"headers": f"Host: {parsed.netloc}\r\n"}


def _redirect_target(checks: SourcePolicy, url: str, timeout_s: float) -> str | None:
    """Where `url` redirects to, every hop checked; None when it cannot be asked."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0", "User-Agent": "vqa"})
    try:
        with checks.urlopen(request, timeout=timeout_s, what="source") as response:
            return str(response.geturl())
    except urllib.error.HTTPError as exc:
        return str(exc.geturl())
    except (urllib.error.URLError, OSError):
        return None


def read(uri: str, *, policy: SourcePolicy, settings: Settings, what: str, byterange: ByteRange | None) -> bytes:
    """GET `uri` (a range of it: a server that ignores ranges has its answer cut)."""
    request: urllib.request.Request | str = uri
    if byterange is not None:
        offset, length = byterange
        request = urllib.request.Request(uri, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
    try:
        with policy.urlopen(request, timeout=settings.network_timeout_s, what=what) as response:
            data = bytes(response.read())
            if byterange is not None and response.status != 206:  # a server that ignores ranges
                data = data[byterange[0] : byterange[0] + byterange[1]]
            return data
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise MediaNotFoundError(f"not found (HTTP {exc.code}): {uri}") from exc
        if 400 <= exc.code < 500:
            raise UnreadableSourceError(f"refused (HTTP {exc.code}): {uri}") from exc
        raise SourceUnavailableError(f"server error (HTTP {exc.code}): {uri}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SourceUnavailableError(f"cannot reach {uri}: {getattr(exc, 'reason', exc)}") from exc


TRANSPORT = Transport(open=open_container, read=read, join=urljoin)

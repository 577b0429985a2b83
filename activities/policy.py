"""What a worker agrees to read, and where it agrees to POST: its source allow-list.

Starters are not trusted: whoever can start a workflow chooses its source and its
webhook. So the worker checks every address it is about to open (the source, each
HLS variant and segment, each redirect, the webhook) against its own settings
(VQA_ALLOWED_SCHEMES, VQA_ALLOWED_ROOTS, VQA_ALLOW_PRIVATE_URLS, VQA_REFUSE_PRIVATE_URLS;
see vqa/settings.py), after DNS resolution, and again on the connected socket.
Link-local, metadata, unspecified and multicast addresses are refused by default;
loopback and private networks are allowed. URLs carrying credentials are refused
always: they would sit in the workflow's history.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote, urljoin, urlparse, urlunparse

from vqa.settings import Settings

from .errors import SourceUnavailableError, UnreadableSourceError

DEFAULT_SCHEMES = frozenset({"file", "http", "https", "s3"})
# Names and addresses of cloud metadata services that are not link-local themselves.
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SourceRefusedError(UnreadableSourceError):
    """The worker's policy forbids this address: retrying cannot help."""


def redact(url: str) -> str:
    """The URL without its `user:password@`, for messages (they end up in the history)."""
    parsed = urlparse(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.netloc.rpartition("@")[2]
    return urlunparse(parsed._replace(netloc=f"***@{host}"))


def has_credentials(url: str) -> bool:
    """Whether the URL carries `user[:password]@` before its host."""
    return "://" in url and "@" in urlparse(url).netloc


def _is_local(url: str) -> bool:
    scheme = urlparse(url).scheme.lower()
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case; `file` for a plain path (or a Windows drive letter)."""
    return "file" if _is_local(url) else urlparse(url).scheme.lower()


def _paths(raw: str | None) -> tuple[str, ...] | None:
    """os.pathsep-separated directories as real paths; None when unset."""
    raw = (raw or "").strip()
    return tuple(os.path.realpath(r) for r in raw.split(os.pathsep) if r.strip()) if raw else None


@dataclass(frozen=True)
class SourcePolicy:
    """The rules; `SourcePolicy.from_settings(settings)` is the worker's."""

    schemes: frozenset[str] = DEFAULT_SCHEMES
    roots: tuple[str, ...] | None = None  # real paths; None: any local path
    allow_private: bool = False  # VQA_ALLOW_PRIVATE_URLS: lifts the link-local/metadata rule
    refuse_private: bool = False  # VQA_REFUSE_PRIVATE_URLS: only global addresses
    results_roots: tuple[str, ...] | None = None  # VQA_ALLOWED_RESULTS_ROOTS; None: any local directory

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SourcePolicy:
        """The worker's rules (default: `Settings()`, this process's environment now)."""
        settings = settings if settings is not None else Settings()
        raw_schemes = (settings.allowed_schemes or "").strip()
        schemes = (
            frozenset(s.strip().lower() for s in raw_schemes.split(",") if s.strip()) if raw_schemes else DEFAULT_SCHEMES
        )
        return cls(
            schemes=schemes,
            roots=_paths(settings.allowed_roots),
            allow_private=settings.allow_private_urls,
            refuse_private=settings.refuse_private_urls,
            results_roots=_paths(settings.allowed_results_roots),
        )

    def check_results_path(self, path: str, *, default_location: str | None) -> None:
        """Refuse writing results to a local path outside the allowed results roots (the worker's
        own default location is always allowed): a starter cannot make a worker write anywhere."""
        if self.results_roots is None:
            return
        real = os.path.realpath(path)
        allowed = (*self.results_roots, *([os.path.realpath(default_location)] if default_location else []))
        if not any(_inside(real, root) for root in allowed):
            self._refuse("results location", path, "is outside the allowed results roots (VQA_ALLOWED_RESULTS_ROOTS)")

    # -- sources -------------------------------------------------------------------------

    def check_source(self, url: str, *, what: str = "source") -> None:
        """Refuse (SourceRefusedError) a source, or a URL a source led to, that the rules forbid.

        Resolves an http(s) host and checks every address it has.
        """
        if has_credentials(url):
            self._refuse(
                what, redact(url), "carries credentials (user:password@); URLs with credentials are never "
                "accepted, as they would be kept in the workflow's history: give the worker its credentials "
                "in its environment",
            )
        scheme = scheme_of(url)
        local = scheme == "file"
        if scheme not in self.schemes:
            kind = "local files are" if scheme == "file" else f"{scheme}:// URLs are"
            self._refuse(what, url, f"{kind} not allowed (VQA_ALLOWED_SCHEMES={','.join(sorted(self.schemes))})")
        if local:
            self.local_path(url, what=what)
        elif scheme in ("http", "https"):
            self.check_host(url, what=what)

    def check_reference(self, url: str, *, referrer: str, what: str) -> None:
        """The checks a playlist's reference gets when it is parsed (no I/O): the address itself
        is checked when it is fetched."""
        if has_credentials(url):
            self._refuse(what, redact(url), "carries credentials (user:password@)")
        if _is_local(url) and not _is_local(referrer):
            self._refuse(what, url, f"is a local file named by a remote playlist ({redact(referrer)})")

    def local_path(self, url: str, *, what: str = "source") -> str:
        """The real path of a local source, refused when it lies outside the allowed roots."""
        parsed = urlparse(url)
        if parsed.scheme.lower() == "file":
            if parsed.netloc not in ("", "localhost"):
                self._refuse(what, url, "names another host (file://HOST/...); only local files are read")
            path = unquote(parsed.path)
        else:
            path = url
        real = os.path.realpath(path)
        if self.roots is not None and not any(_inside(real, root) for root in self.roots):
            self._refuse(what, url, "is outside the allowed roots (VQA_ALLOWED_ROOTS)")
        return real

    def check_webhook(self, url: str) -> None:
        """Refuse a webhook the rules forbid: credentials, another scheme, a forbidden address."""
        if has_credentials(url):
            self._refuse("webhook", redact(url), "carries credentials (user:password@); the worker signs with its VQA_WEBHOOK_SECRET")
        if urlparse(url).scheme.lower() not in ("http", "https"):
            self._refuse("webhook", url, "is not an http:// or https:// URL")
        self.check_host(url, what="webhook")

    # -- addresses -----------------------------------------------------------------------

    def check_host(self, url: str, *, what: str) -> list[IPAddress]:
        """Resolve the URL's host and check each of its addresses; returns them (checked)."""
        parsed = urlparse(url)
        host = (parsed.hostname or "").rstrip(".").lower()
        if not host:
            self._refuse(what, url, "names no host")
        if host in _METADATA_HOSTS and not self.allow_private:
            self._refuse(what, url, f"names {host}, a cloud metadata service ({self._lift_hint()})")
        try:
            port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise SourceRefusedError(f"{what} refused: {url} has an invalid port") from exc
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise SourceUnavailableError(f"cannot resolve the host of {url}: {exc.strerror or exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for address in addresses:
            self.check_address(address, url=url, what=what)
        return addresses

    def check_address(self, address: IPAddress | str, *, url: str, what: str) -> None:
        """Refuse one address (of `url`'s host) the rules forbid."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        shown = url if urlparse(url).hostname == str(ip) else f"{url} ({ip})"
        if self.refuse_private and not ip.is_global:
            self._refuse(what, shown, "is not a public address, and VQA_REFUSE_PRIVATE_URLS is set")
        if self.allow_private:
            return
        if ip.is_link_local:
            self._refuse(what, shown, f"is a link-local address, where cloud metadata services live ({self._lift_hint()})")
        if ip in _METADATA_ADDRESSES:
            self._refuse(what, shown, f"is a cloud metadata service ({self._lift_hint()})")
        if ip.is_unspecified or ip.is_multicast:
            self._refuse(what, shown, f"is an unspecified or multicast address ({self._lift_hint()})")

    @staticmethod
    def _lift_hint() -> str:
        return "refused unless VQA_ALLOW_PRIVATE_URLS=1"

    @staticmethod
    def _refuse(what: str, url: str, why: str) -> NoReturn:
        raise SourceRefusedError(f"{what} refused: {url} {why}")

    # -- fetching --------------------------------------------------------------------------

    def urlopen(self, request: urllib.request.Request | str, *, timeout: float, what: str) -> Any:
        """`urllib.request.urlopen` that checks each redirect and the address each connection reaches.

        The check of the connected socket's address closes the gap between the
        resolution checked above and the one the connection makes (DNS rebinding).
        """
        opener = urllib.request.build_opener(
            _CheckedHTTPHandler(self, what), _CheckedHTTPSHandler(self, what), _CheckedRedirectHandler(self, what)
        )
        return opener.open(request, timeout=timeout)


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def _checked_connect(policy: SourcePolicy, url: str, what: str) -> Callable[..., socket.socket]:
    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        sock = socket.create_connection(address, *args, **kwargs)
        try:
            policy.check_address(sock.getpeername()[0].split("%")[0], url=url, what=what)
        except BaseException:
            sock.close()
            raise
        return sock

    return create_connection


def _connection_factory(policy: SourcePolicy, what: str, cls: type[http.client.HTTPConnection], req: urllib.request.Request) -> Callable[..., http.client.HTTPConnection]:
    # Through a proxy, the socket reaches the proxy: the destination was checked by name before.
    direct = req.host == urlparse(req.full_url).netloc

    def factory(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection = cls(host, **kwargs)
        if direct:
            connection._create_connection = _checked_connect(policy, req.full_url, what)  # type: ignore[attr-defined]
        return connection

    return factory


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: SourcePolicy, what: str) -> None:
        super().__init__()
        self._policy, self._what = policy, what

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection_factory(self._policy, self._what, http.client.HTTPConnection, req), req)  # type: ignore[arg-type]


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: SourcePolicy, what: str) -> None:
        super().__init__()
        self._policy, self._what = policy, what

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        factory = _connection_factory(self._policy, self._what, http.client.HTTPSConnection, req)
        return self.do_open(factory, req, context=self._context)  # type: ignore[arg-type, attr-defined]


class _CheckedRedirectHandler(urllib.request.HTTPRedirectHandler):
    def __init__(self, policy: SourcePolicy, what: str) -> None:
        super().__init__()
        self._policy, self._what = policy, what

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location and urlparse(urljoin(req.full_url, location)).scheme.lower() not in ("http", "https"):
            raise SourceRefusedError(
                f"{self._what} refused: {redact(req.full_url)} redirects to {redact(location)}, not an http(s) URL"
            )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> urllib.request.Request | None:
        what = f"{self._what} (redirected from {redact(req.full_url)})"
        if has_credentials(newurl):
            raise SourceRefusedError(f"{what} refused: {redact(newurl)} carries credentials (user:password@)")
        self._policy.check_host(newurl, what=what)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

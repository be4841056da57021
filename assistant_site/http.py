"""The one outbound HTTP client for workflow nodes and connectors (docs/security.md).

Every request goes through :func:`request`, which adds what a server making calls on behalf of
users needs:

- an SSRF guard: the host name is resolved first and the request is refused when any of its
  addresses is private, loopback, link-local (cloud metadata at 169.254.169.254), multicast,
  reserved, unspecified or otherwise not public, unless the host or its network is in
  ``OUTBOUND_HTTP_ALLOWED_HOSTS``. The connection then goes to the address that was checked,
  so DNS cannot answer differently between the check and the connect (DNS rebinding);
- only ``http`` and ``https``, no proxies from the environment, no redirects followed (each
  hop would need its own check; a 3xx answer is returned to the caller as it is);
- a total deadline per attempt (resolve, connect, send, read the whole body), a cap on the
  response size, and bounded retries with exponential backoff and jitter on connection
  errors, 429 and 5xx, honouring ``Retry-After`` up to a cap.

Failures raise :class:`OutboundHttpError`; an HTTP error status is not a failure here, the
caller decides (``HttpResponse.raise_for_status`` does the usual thing).

This module imports no Django, so that workflow node types (plain Python, enforced by
import-linter) can use it; see :func:`configured_allow_list` for how it reads the setting.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import json as jsonlib
import random
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, TypeAlias

import httpx

ALLOW_LIST_SETTING = "OUTBOUND_HTTP_ALLOWED_HOSTS"
SCHEMES = frozenset({"http", "https"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_RETRIES = 5
BACKOFF_CAP_S = 10.0
USER_AGENT = "AssistantStudio/0.1"
PREVIEW_CHARS = 200

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 9110 token characters: what a header name may contain.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class OutboundHttpError(Exception):
    """An outbound request that did not produce an answer.

    ``permanent`` is true when repeating the same request cannot help (refused by the SSRF
    guard, bad URL, invalid certificate, response too large); connectors disable a binding on
    a permanent error and retry later on a temporary one.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class OutboundHttpRefusedError(OutboundHttpError):
    """The SSRF guard refused the destination; nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    url: str  # as the caller wrote it, not the pinned address
    reason: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        message = Message()
        message["content-type"] = self.headers.get("content-type", "")
        charset = message.get_content_charset() or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except ValueError as exc:
            raise OutboundHttpError(
                f"the answer from {display_url(self.url)} is not JSON ({exc}): {self.preview()}",
                permanent=True,
            ) from exc

    def preview(self, limit: int = PREVIEW_CHARS) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[:limit] + "..."

    def raise_for_status(self) -> None:
        if self.ok:
            return
        transient = self.status in {408, 425, 429} or self.status >= 500
        status = f"{self.status} {self.reason}".strip()
        preview = self.preview()
        raise OutboundHttpError(
            f"{display_url(self.url)} answered {status}" + (f": {preview}" if preview else ""),
            permanent=not transient,
        )


# --- SSRF guard -------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowList:
    """Host names and networks that may be reached although they are not public."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry:
                    raise OutboundHttpError(
                        f"{ALLOW_LIST_SETTING} entry {raw!r} is not a valid network", permanent=True
                    ) from None
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def configured_allow_list() -> list[str]:
    """``settings.OUTBOUND_HTTP_ALLOWED_HOSTS`` when Django runs this process, else nothing.

    Django is looked up in ``sys.modules`` instead of imported: the web process and the
    workers always have it configured, and a plain-Python caller (the engine outside Django)
    gets the strict default, with no exceptions to the guard.
    """
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None)
    if settings is None or not settings.configured:
        return []
    return list(getattr(settings, ALLOW_LIST_SETTING, []))


_PROBLEMS: tuple[tuple[str, str], ...] = (
    # (ipaddress property, how the refusal names it); the most specific first, since
    # 127.0.0.1, 169.254.169.254 and 240.0.0.1 are also "private" to the ipaddress module.
    ("is_unspecified", "an unspecified"),
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_reserved", "a reserved"),
    ("is_private", "a private"),
)


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` must not be reached (e.g. "a private"), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.5 reaches 10.0.0.5; Python 3.11 does not look inside it by itself.
        if address.ipv4_mapped is not None:
            return address_problem(address.ipv4_mapped)
        if address.scope_id:
            return "a link-local"
    for attribute, label in _PROBLEMS:
        if getattr(address, attribute):
            return label
    # Shared address space (100.64.0.0/10, carrier NAT) and the like: none of the above, but
    # not reachable on the internet either, so most likely an internal service.
    return None if address.is_global else "a non-public"


def vet(host: str, addresses: Sequence[IPAddress], allow: AllowList) -> None:
    """Raise :class:`OutboundHttpRefusedError` unless every address of ``host`` may be reached.

    Any bad address refuses the host, not just the one we would use: a name that resolves to
    a public and a private address is exactly what a rebinding attack looks like.
    """
    if allow.allows_host(host):
        return
    for address in addresses:
        problem = address_problem(address)
        if problem is None or allow.allows_address(address):
            continue
        if _literal(host) is not None:
            raise OutboundHttpRefusedError(
                f"refused: {address} is {problem} address; add it to {ALLOW_LIST_SETTING} to "
                "allow it"
            )
        raise OutboundHttpRefusedError(
            f"refused: {host} resolves to {address}, {problem} address; add the host name or "
            f"the network to {ALLOW_LIST_SETTING} to allow it"
        )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundHttpError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OutboundHttpError(f"cannot resolve {host}: no addresses")
    return addresses


# --- Requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) host name or address literal, without brackets


def _parse_url(url: str) -> _Target:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise OutboundHttpError(f"invalid URL {url!r}: {exc}", permanent=True) from exc
    if parsed.scheme not in SCHEMES:
        raise OutboundHttpError(
            f"invalid URL {url!r}: only http and https are allowed", permanent=True
        )
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise OutboundHttpError(f"invalid URL {url!r}: no host", permanent=True)
    return _Target(parsed, host)


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise OutboundHttpError(f"invalid header name {name!r}", permanent=True)
        if any(char in value for char in "\r\n\0"):
            raise OutboundHttpError(f"header {name} contains a line break", permanent=True)


def pinned(target: _Target, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, extra headers and extensions that send ``target``'s request to ``address``.

    This is what defeats DNS rebinding: the URL handed to httpx names the vetted address, so
    httpx never resolves the host name itself and cannot be pointed elsewhere by a second DNS
    answer. The server still sees the original name where it matters: in the Host header
    (virtual hosting), and for https in the TLS SNI and certificate check (httpcore's
    ``sni_hostname`` extension sets ``server_hostname``, which OpenSSL verifies the
    certificate against), so pinning weakens neither routing nor certificate validation.
    """
    url = target.url.copy_with(host=str(address))
    headers = {"Host": target.url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https" and _literal(target.host) is None:
        extensions["sni_hostname"] = target.host
    return url, headers, extensions


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once (loading the CA bundle takes milliseconds); SSL_CERT_FILE / SSL_CERT_DIR are
    # honoured for private CAs, while proxies from the environment are not (trust_env=False
    # on the client), since a proxy would make the connection go somewhere we did not check.
    return httpx.create_ssl_context()


class _TooLargeError(Exception):
    pass


def display_url(url: str) -> str:
    """Host and path for messages: query strings often carry API keys."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "the server"
    return f"{parsed.host}{parsed.path}"


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    # Counts decoded bytes: a small gzip body can expand far beyond the cap.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


async def _attempt(
    method: str,
    target: _Target,
    *,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout_s: float,
    max_response_bytes: int,
    allow: AllowList,
    verify: ssl.SSLContext | None,
) -> HttpResponse:
    where = display_url(str(target.url))
    addresses = await resolve(target.host, target.url.port or _default_port(target.url))
    vet(target.host, addresses, allow)
    async with httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        verify=verify or _default_ssl_context(),
        timeout=httpx.Timeout(timeout_s),
    ) as client:
        last_connect_error: httpx.ConnectError | None = None
        # Every address passed the guard; try them in order, as a browser would, when one
        # does not accept connections (e.g. "localhost" is ::1 first but served on IPv4).
        for address in addresses:
            url, pin_headers, extensions = pinned(target, address)
            request = client.build_request(
                method,
                url,
                headers={"User-Agent": USER_AGENT, **headers, **pin_headers},
                content=content,
                extensions=extensions,
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                if _is_certificate_error(exc):
                    raise OutboundHttpError(
                        f"{where}: TLS certificate is not valid for {target.host}: {exc}",
                        permanent=True,
                    ) from exc
                last_connect_error = exc
                continue
            try:
                body = await _read_capped(response, max_response_bytes)
            except _TooLargeError:
                raise OutboundHttpError(
                    f"{where}: the answer is larger than {max_response_bytes} bytes; "
                    "stopped reading",
                    permanent=True,
                ) from None
            finally:
                await response.aclose()
            return HttpResponse(
                status=response.status_code,
                headers=dict(response.headers.items()),
                body=body,
                url=str(target.url),
                reason=response.reason_phrase,
            )
    assert last_connect_error is not None  # noqa: S101  (addresses is never empty)
    raise last_connect_error


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_s(attempt: int, base_s: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""
    delay = min(BACKOFF_CAP_S, base_s * 2.0**attempt)
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  (jitter, not a secret)


def _should_retry(status: int) -> bool:
    return status == 429 or status >= 500


def _check_limits(method: str, retries: int, timeout_s: float, max_response_bytes: int) -> None:
    if method not in METHODS:
        raise OutboundHttpError(f"unsupported HTTP method {method!r}", permanent=True)
    if not 0 <= retries <= MAX_RETRIES:
        raise OutboundHttpError(f"retries must be between 0 and {MAX_RETRIES}", permanent=True)
    if timeout_s <= 0 or max_response_bytes < 0:
        raise OutboundHttpError("timeout_s and max_response_bytes must be positive", permanent=True)


async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    timeout_s: float = 10.0,
    max_response_bytes: int = 1_000_000,
    retries: int = 0,
    backoff_base_s: float = 0.5,
    max_retry_after_s: float = 30.0,
    allowed_hosts: Iterable[str] | None = None,
    verify: ssl.SSLContext | None = None,
) -> HttpResponse:
    """Send one request through the SSRF guard; see the module docstring for the rules.

    ``timeout_s`` bounds each attempt as a whole (resolve, connect, send, read the body).
    ``retries`` (at most 5) repeats the request after a connection error or timeout, a 429 or
    a 5xx answer, waiting an exponential backoff with jitter, or what ``Retry-After`` asks
    for when that is longer and at most ``max_retry_after_s`` (longer: the answer is returned
    at once). Retries resend POST bodies too, so only ask for them when the receiver
    tolerates a duplicate. After the last retry an error status is returned, a connection
    error raised. ``allowed_hosts`` replaces ``settings.OUTBOUND_HTTP_ALLOWED_HOSTS``.
    ``verify`` is an SSL context for a private CA or client certificate.
    """
    method = method.upper()
    _check_limits(method, retries, timeout_s, max_response_bytes)
    target = _parse_url(url)
    allow = AllowList.parse(configured_allow_list() if allowed_hosts is None else allowed_hosts)
    # Host always names the checked destination (see pinned()); a caller's would be a second one.
    all_headers = {name: value for name, value in (headers or {}).items() if name.lower() != "host"}
    _check_headers(all_headers)
    if json is not None:
        if content is not None:
            raise OutboundHttpError("pass json or content, not both", permanent=True)
        content = jsonlib.dumps(json, ensure_ascii=False).encode()
        if not any(name.lower() == "content-type" for name in all_headers):
            all_headers["Content-Type"] = "application/json"
    where = display_url(url)
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                response = await _attempt(
                    method,
                    target,
                    headers=all_headers,
                    content=content,
                    timeout_s=timeout_s,
                    max_response_bytes=max_response_bytes,
                    allow=allow,
                    verify=verify,
                )
        except (OutboundHttpError, TimeoutError, httpx.HTTPError) as exc:
            error = _as_error(exc, f"{method} {where}", timeout_s, attempt)
            if error.permanent or attempt >= retries:
                if error is exc:
                    raise
                raise error from exc
            delay = backoff_s(attempt, backoff_base_s)
        else:
            if not _should_retry(response.status) or attempt >= retries:
                return response
            wanted = retry_after_s(response.headers.get("retry-after"))
            if wanted is not None and wanted > max_retry_after_s:
                return response  # asked to come back later than we are prepared to wait
            delay = max(backoff_s(attempt, backoff_base_s), wanted or 0.0)
        attempt += 1
        await asyncio.sleep(delay)


def _as_error(exc: Exception, what: str, timeout_s: float, attempt: int) -> OutboundHttpError:
    if isinstance(exc, OutboundHttpError):
        return exc
    after = f" (after {attempt + 1} attempts)" if attempt else ""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return OutboundHttpError(f"{what}: no complete answer within {timeout_s:g} s{after}")
    return OutboundHttpError(f"{what} failed: {str(exc) or type(exc).__name__}{after}")

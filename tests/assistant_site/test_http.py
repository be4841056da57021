"""The outbound HTTP client against a real local server: SSRF guard, pinning, caps, retries."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_django.fixtures import Settings

from assistant_site import http
from assistant_site.http import (
    AllowList,
    HttpResponse,
    OutboundHttpError,
    OutboundHttpRefusedError,
)

# --- A real HTTP server on loopback ----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json, /echo, /status/<code>, /flaky/<key>?failures=N&status=S,
    /retry-after/<key>?seconds=S, /slow?seconds=S, /big?bytes=N&declared=0|1, /redirect."""

    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def do_PATCH(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, length: bool = True
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        if length:  # without it, HTTP/1.0 ends the body by closing the connection
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), headers)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        hits = self.server.hit(parts.path)
        segments = parts.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if parts.path == "/json":
            self._json(200, {"data": {"id": "evt_42", "tags": ["vip", "new"]}})
        elif parts.path == "/echo":
            self._json(
                200,
                {
                    "method": self.command,
                    "host": self.headers["Host"],
                    "headers": dict(self.headers.items()),
                    "json": json.loads(body) if body else None,
                },
            )
        elif segments[0] == "status":
            self._send(int(segments[1]), f"status {segments[1]} body".encode())
        elif segments[0] == "flaky":
            failing = hits <= int(query.get("failures", "1"))
            self._json(int(query.get("status", "503")) if failing else 200, {"hits": hits})
        elif segments[0] == "retry-after":
            if hits == 1:
                self._json(429, {"error": "slow down"}, {"Retry-After": query["seconds"]})
            else:
                self._json(200, {"hits": hits})
        elif parts.path == "/slow":
            time.sleep(float(query.get("seconds", "2")))
            self._json(200, {"slow": True})
        elif parts.path == "/big":
            size = int(query["bytes"])
            self._send(200, b"x" * size, length=query.get("declared") == "1")
        elif parts.path == "/redirect":
            self._send(302, b"", {"Location": "/json"})
        else:
            self._send(404, b"no such route")


class LocalServer(ThreadingHTTPServer):
    """A real HTTP(S) server on 127.0.0.1 that counts the requests it receives by path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def hit(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    server = LocalServer()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with serve() as server:
        yield server


def fetch(method: str, url: str, **options: Any) -> HttpResponse:
    return asyncio.run(http.request(method, url, **options))


@pytest.fixture
def guard_on(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []


@pytest.fixture
def loopback_allowed(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]


# --- SSRF guard ---------------------------------------------------------------------------


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "refused: 127.0.0.1 is a loopback address; add it to "),
        ("localhost", "refused: localhost resolves to 127.0.0.1, a loopback address"),
        ("2130706433", "refused: 2130706433 resolves to 127.0.0.1, a loopback address"),
        ("[::1]", "refused: ::1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "is a loopback address"),
        ("0.0.0.0", "refused: 0.0.0.0 is an unspecified address"),  # noqa: S104
    ],
)
def test_refuses_loopback_destinations_and_sends_nothing(
    server: LocalServer, host: str, message: str
) -> None:
    with pytest.raises(OutboundHttpRefusedError) as caught:
        fetch("GET", server.url("/json", host=host))
    assert message in caught.value.message
    assert "OUTBOUND_HTTP_ALLOWED_HOSTS" in caught.value.message
    assert caught.value.permanent
    assert server.hits == Counter()


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://10.0.0.5/hook",
            "refused: 10.0.0.5 is a private address; add it to OUTBOUND_HTTP_ALLOWED_HOSTS to "
            "allow it",
        ),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://[fd00::1]/", "fd00::1 is a private address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("http://100.64.0.1/", "100.64.0.1 is a non-public address"),
    ],
)
def test_refuses_internal_addresses_before_connecting(url: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundHttpRefusedError, match=message):
        fetch("GET", url, timeout_s=5)
    assert time.monotonic() - started < 1  # refused, not timed out trying


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    addresses = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.1.2.3")]
    with pytest.raises(OutboundHttpRefusedError, match=r"rebind\.example resolves to 10\.1\.2\.3"):
        http.vet("rebind.example", addresses, AllowList.parse([]))
    http.vet("rebind.example", addresses[:1], AllowList.parse([]))


@pytest.mark.parametrize(
    ("entries", "host", "address", "allowed"),
    [
        (["10.0.0.0/8"], "10.0.0.5", "10.0.0.5", True),
        (["10.0.0.5"], "10.0.0.5", "10.0.0.5", True),
        (["10.0.0.0/24"], "10.0.1.5", "10.0.1.5", False),
        (["crm.internal"], "CRM.internal.", "10.9.9.9", True),
        (["crm.internal"], "other.internal", "10.9.9.9", False),
        (["::1/128"], "::1", "::1", True),
    ],
)
def test_the_allow_list_takes_host_names_and_networks(
    entries: list[str], host: str, address: str, allowed: bool
) -> None:
    allow = AllowList.parse(entries)
    try:
        http.vet(host, [ipaddress.ip_address(address)], allow)
    except OutboundHttpRefusedError:
        assert not allowed
    else:
        assert allowed


def test_a_malformed_network_in_the_allow_list_is_an_error() -> None:
    with pytest.raises(OutboundHttpError, match="is not a valid network"):
        AllowList.parse(["10.0.0.0/33"])


def test_public_addresses_have_no_problem() -> None:
    for address in ("93.184.215.14", "2606:4700::1111", "1.1.1.1"):
        assert http.address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "entries", [["127.0.0.1"], ["127.0.0.0/8"], ["localhost", "127.0.0.1"], [" 127.0.0.1 "]]
)
def test_the_allow_list_setting_lets_loopback_through(
    server: LocalServer, settings: Settings, entries: list[str]
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = entries
    response = fetch("GET", server.url("/json"))
    assert response.status == 200
    assert response.json() == {"data": {"id": "evt_42", "tags": ["vip", "new"]}}
    assert server.hits["/json"] == 1


@pytest.mark.usefixtures("guard_on")
def test_an_allow_list_passed_by_the_caller_replaces_the_setting(server: LocalServer) -> None:
    assert fetch("GET", server.url("/json"), allowed_hosts=["127.0.0.1"]).ok


@pytest.mark.usefixtures("guard_on")
def test_an_allow_listed_host_name_is_connected_to_by_its_checked_address(
    server: LocalServer,
) -> None:
    # The request reaches the server via the vetted address, with the original Host header.
    response = fetch("GET", server.url("/echo", host="localhost"), allowed_hosts=["localhost"])
    assert response.json()["host"] == f"localhost:{server.port}"


def test_the_request_is_pinned_to_the_vetted_address() -> None:
    target = http._parse_url("https://api.example.com:8443/v1/events?key=k")
    url, headers, extensions = http.pinned(target, ipaddress.ip_address("93.184.215.14"))
    assert str(url) == "https://93.184.215.14:8443/v1/events?key=k"
    assert headers == {"Host": "api.example.com:8443"}
    assert extensions == {"sni_hostname": "api.example.com"}
    url, _, _ = http.pinned(target, ipaddress.ip_address("2606:4700::1111"))
    assert url.netloc == b"[2606:4700::1111]:8443"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file", "file:///etc/passwd", "gopher://x/", "http:///nohost"]
)
def test_only_http_and_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(OutboundHttpError, match="invalid URL") as caught:
        fetch("GET", url)
    assert caught.value.permanent


def test_header_injection_is_refused() -> None:
    with pytest.raises(OutboundHttpError, match="line break"):
        fetch("GET", "https://example.com/", headers={"X-A": "1\r\nX-Injected: 2"})


@pytest.mark.usefixtures("loopback_allowed")
def test_redirects_are_returned_not_followed(server: LocalServer) -> None:
    response = fetch("GET", server.url("/redirect"))
    assert (response.status, response.headers["location"]) == (302, "/json")
    assert server.hits["/json"] == 0


# --- TLS with a pinned address ----------------------------------------------------------


def _certificates(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A test CA and a server certificate for "localhost": (server context, client context)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    return server_context, client_context


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[LocalServer, ssl.SSLContext]]:
    server_context, client_context = _certificates(tmp_path)
    with serve(server_context) as server:
        yield server, client_context


@pytest.mark.usefixtures("guard_on")
def test_https_checks_the_certificate_against_the_host_name_not_the_pinned_address(
    tls: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, client_context = tls
    response = fetch(
        "GET",
        server.url("/echo", host="localhost", scheme="https"),
        allowed_hosts=["localhost"],
        verify=client_context,
    )
    assert response.json()["host"] == f"localhost:{server.port}"


@pytest.mark.usefixtures("guard_on")
def test_https_to_a_name_the_certificate_does_not_cover_fails_permanently(
    tls: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, client_context = tls
    with pytest.raises(OutboundHttpError, match="TLS certificate is not valid") as caught:
        fetch(
            "GET",
            server.url("/json", scheme="https"),
            allowed_hosts=["127.0.0.1"],
            verify=client_context,
            retries=2,
            backoff_base_s=0.01,
        )
    assert caught.value.permanent


# --- Caps, timeouts, retries ------------------------------------------------------------


@pytest.mark.usefixtures("loopback_allowed")
@pytest.mark.parametrize("declared", ["0", "1"])
def test_a_response_over_the_size_cap_is_cut_off(server: LocalServer, declared: str) -> None:
    with pytest.raises(OutboundHttpError, match="larger than 1000 bytes") as caught:
        fetch("GET", server.url(f"/big?bytes=5000&declared={declared}"), max_response_bytes=1000)
    assert caught.value.permanent
    assert len(fetch("GET", server.url("/big?bytes=1000"), max_response_bytes=1000).body) == 1000


@pytest.mark.usefixtures("loopback_allowed")
def test_a_slow_server_times_out(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundHttpError, match=r"no complete answer within 0\.3 s") as caught:
        fetch("GET", server.url("/slow?seconds=3"), timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert not caught.value.permanent


@pytest.mark.usefixtures("loopback_allowed")
def test_503_is_retried_until_success(server: LocalServer) -> None:
    response = fetch("GET", server.url("/flaky/a?failures=2"), retries=3, backoff_base_s=0.01)
    assert (response.status, response.json()) == (200, {"hits": 3})
    assert server.hits["/flaky/a"] == 3


@pytest.mark.usefixtures("loopback_allowed")
def test_after_the_last_retry_the_error_status_is_returned(server: LocalServer) -> None:
    response = fetch("POST", server.url("/flaky/b?failures=9"), retries=2, backoff_base_s=0.01)
    assert response.status == 503
    assert server.hits["/flaky/b"] == 3


@pytest.mark.usefixtures("loopback_allowed")
def test_without_retries_a_503_is_sent_once(server: LocalServer) -> None:
    assert fetch("GET", server.url("/flaky/c?failures=1")).status == 503
    assert server.hits["/flaky/c"] == 1


@pytest.mark.usefixtures("loopback_allowed")
def test_4xx_other_than_429_is_not_retried(server: LocalServer) -> None:
    response = fetch("GET", server.url("/status/404"), retries=3, backoff_base_s=0.01)
    assert response.status == 404
    assert server.hits["/status/404"] == 1
    with pytest.raises(OutboundHttpError, match="answered 404 Not Found: status 404 body") as e:
        response.raise_for_status()
    assert e.value.permanent


@pytest.mark.usefixtures("loopback_allowed")
def test_retry_after_is_honoured(server: LocalServer) -> None:
    started = time.monotonic()
    response = fetch("GET", server.url("/retry-after/a?seconds=1"), retries=1, backoff_base_s=0.01)
    assert response.status == 200
    assert time.monotonic() - started >= 0.95
    assert server.hits["/retry-after/a"] == 2


@pytest.mark.usefixtures("loopback_allowed")
def test_a_retry_after_longer_than_the_cap_returns_the_429(server: LocalServer) -> None:
    started = time.monotonic()
    response = fetch(
        "GET", server.url("/retry-after/b?seconds=120"), retries=3, max_retry_after_s=5
    )
    assert response.status == 429
    assert time.monotonic() - started < 2
    assert server.hits["/retry-after/b"] == 1


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OutboundHttpError, match=r"failed: .*\(after 3 attempts\)") as caught:
        fetch(
            "GET",
            f"http://127.0.0.1:{port}/",
            retries=2,
            backoff_base_s=0.01,
            allowed_hosts=["127.0.0.1"],
        )
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), (None, None), ("soon", None)],
)
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    assert http.retry_after_s(header) == expected


def test_retry_after_as_an_http_date() -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    seconds = http.retry_after_s(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 25 < seconds <= 30


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(8):
        delay = http.backoff_s(attempt, 0.5)
        full = min(http.BACKOFF_CAP_S, 0.5 * 2**attempt)
        assert full / 2 <= delay <= full


# --- Bodies ---------------------------------------------------------------------------


@pytest.mark.usefixtures("loopback_allowed")
def test_json_bodies_and_headers_are_sent(server: LocalServer) -> None:
    headers = {"X-Trace": "t1", "host": "internal.example"}
    response = fetch("POST", server.url("/echo"), json={"text": "你好"}, headers=headers)
    echoed = response.json()
    assert echoed["json"] == {"text": "你好"}
    assert echoed["headers"]["Content-Type"] == "application/json"
    assert echoed["headers"]["X-Trace"] == "t1"
    assert echoed["headers"]["User-Agent"].startswith("AssistantStudio/")
    assert echoed["host"] == f"127.0.0.1:{server.port}"  # the caller's Host is dropped


def test_text_decodes_with_the_declared_charset() -> None:
    response = HttpResponse(
        status=200,
        headers={"content-type": "text/plain; charset=gbk"},
        body="退款".encode("gbk"),
        url="https://example.com/",
    )
    assert response.text == "退款"
    with pytest.raises(OutboundHttpError, match="is not JSON"):
        response.json()

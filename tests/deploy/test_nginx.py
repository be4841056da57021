"""The nginx site (deploy/nginx/): rendered by render.py with test values, read back as a
parsed configuration for the properties that matter, accepted by `nginx -t`, and then run
for real on free ports in front of two small recording upstreams, standing for gunicorn (HTTP)
and uvicorn (/ws/): routing between them, redirects, the allow-list, rate limits, WebSocket
upgrades, forwarded headers, static files, body limits and TLS.

nginx is Debian's package (`apt-get install -y --no-install-recommends nginx`); without it
the tests that run nginx skip (fail under CI=true), the others still run."""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.urls import reverse

from tests.conftest import REPO, free_port, require_service, wait_for_port

NGINX_DIR = REPO / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "assistant-studio.conf"
RENDER = NGINX_DIR / "render.py"
ALLOW = NGINX_DIR / "allow-admin.conf"
NGINX = shutil.which("nginx")
SERVER_NAME = "studio.example.test"
UPLOAD_MB_DEFAULT = re.compile(
    r'KNOWLEDGE_MAX_UPLOAD_MB\s*=\s*env_int\(\s*"KNOWLEDGE_MAX_UPLOAD_MB",\s*(\d+)'
)
HASHED_STATIC = "js/app.3f2a9c1b7d4e.js"  # a name as ManifestStaticFilesStorage writes it
# The two upstreams of the site (docs/architecture.md, "HTTP: WSGI or ASGI").
HTTP_UPSTREAM = "assistant_studio_http"  # gunicorn: everything but /ws/
WS_UPSTREAM = "assistant_studio_ws"  # uvicorn: the WebSockets under /ws/


# --- A small nginx configuration parser ----------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def all(self, name: str) -> list[Directive]:
        return [child for child in self.block or [] if child.name == name]

    def one(self, name: str) -> Directive:
        found = self.all(name)
        assert len(found) == 1, f"{self.name} {self.args}: {len(found)} {name} directives"
        return found[0]

    def value(self, name: str) -> str:
        return " ".join(self.one(name).args)

    def location(self, *args: str) -> Directive:
        matches = [loc for loc in self.all("location") if loc.args == list(args)]
        assert len(matches) == 1, f"location {args}: {len(matches)} found"
        return matches[0]


_TOKEN = re.compile(r"""#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[{};]|[^\s{};"'#]+""")


def parse(text: str) -> Directive:
    """The configuration as a tree: comments dropped, quotes removed from arguments."""
    root = Directive("<root>", [], [])
    stack = [root]
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if token.startswith("#"):
            continue
        if token in {";", "{"}:
            directive = Directive(words[0], words[1:], [] if token == "{" else None)
            assert stack[-1].block is not None
            stack[-1].block.append(directive)
            if token == "{":
                stack.append(directive)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token[1:-1] if token[0] in "\"'" else token)
    assert len(stack) == 1, "unbalanced braces"
    assert not words, f"unterminated directive {words}"
    return root


# --- Rendering -------------------------------------------------------------------------------


@dataclass
class Site:
    root: Path
    conf: Path
    main: Path
    cert: Path
    key: Path
    acme: Path
    static: Path
    allow: Path
    http_port: int
    https_port: int
    parsed: Directive = field(init=False)

    def __post_init__(self) -> None:
        self.parsed = parse(self.conf.read_text(encoding="utf-8"))

    def server(self, port: int) -> Directive:
        servers = [s for s in self.parsed.all("server") if str(port) in s.all("listen")[0].args[0]]
        assert len(servers) == 1
        return servers[0]

    @property
    def https(self) -> Directive:
        return self.server(self.https_port)


def run_render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER), *args], capture_output=True, text=True, check=False
    )


def make_certificate(root: Path) -> tuple[Path, Path]:
    """A self-signed certificate for SERVER_NAME, as certbot's fullchain.pem/privkey.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = root / "fullchain.pem", root / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


BROTLI_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so")


def build_site(
    root: Path,
    *,
    http_upstream: str = "127.0.0.1:9",
    ws_upstream: str = "127.0.0.1:10",
    ipv6: bool = True,
    brotli: bool = False,
) -> Site:
    """Render the template with test values and write a main nginx.conf around it that keeps
    every path (pid, temp files, logs) inside ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(root)
    acme, static, logs = root / "acme", root / "static", root / "logs"
    for folder in (acme, static, logs):
        folder.mkdir()
    allow = root / "allow-admin.conf"
    # The shipped file, with this host's IPv4 loopback only: 127.0.0.2 is then "outside".
    allow.write_text(ALLOW.read_text(encoding="utf-8").replace("allow ::1;", ""))
    http_port, https_port = free_port(), free_port()
    conf = root / "assistant-studio.conf"
    args = [
        "--server-name", SERVER_NAME,
        "--http-upstream", http_upstream,
        "--ws-upstream", ws_upstream,
        "--tls-cert", str(cert),
        "--tls-key", str(key),
        "--acme-root", str(acme),
        "--static-root", str(static),
        "--log-dir", str(logs),
        "--admin-allow", str(allow),
        "--http-port", str(http_port),
        "--https-port", str(https_port),
        "-o", str(conf),
    ]  # fmt: skip
    options = [*([] if ipv6 else ["--no-ipv6"]), *(["--brotli"] if brotli else [])]
    result = run_render(*args, *options)
    assert result.returncode == 0, result.stderr
    temp = root / "temp"
    temp.mkdir()
    # Workers of a root master run as "nobody", who cannot enter pytest's 0700 folders.
    user = "user root;\n" if _is_root() else ""
    if brotli:
        user += f"load_module {BROTLI_MODULE};\n"
    main = root / "nginx.conf"
    main.write_text(
        f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {logs}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {logs}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {conf};
}}
"""
    )
    return Site(root, conf, main, cert, key, acme, static, allow, http_port, https_port)


def _is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return build_site(tmp_path / "site")


# --- The rendered configuration ---------------------------------------------------------------


def test_render_fills_every_placeholder_and_keeps_nginx_variables(site: Site) -> None:
    text = site.conf.read_text(encoding="utf-8")
    assert "${" not in text
    assert "$request_uri" in text
    assert "$proxy_add_x_forwarded_for" in text
    assert site.https.value("server_name") == SERVER_NAME
    assert site.https.value("ssl_certificate") == str(site.cert)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--server-name", "studio.example.com; include /etc/shadow"),
        ("--http-upstream", "127.0.0.1:8010 backup"),
        ("--ws-upstream", "127.0.0.1:8020; include /etc/shadow"),
        ("--static-root", "relative/static"),
        ("--admin-allow", "/etc/nginx/allow.conf;"),
    ],
)
def test_render_refuses_values_that_would_inject_directives(flag: str, value: str) -> None:
    args = {"--server-name": "studio.example.com", flag: value}
    result = run_render(*[item for pair in args.items() for item in pair])
    assert result.returncode == 2
    assert "render.py:" in result.stderr
    assert result.stdout == ""


def test_render_refuses_a_placeholder_it_has_no_value_for(tmp_path: Path) -> None:
    template = tmp_path / "t.conf"
    template.write_text("server { server_name ${SERVER_NAME}; root ${UNKNOWN_ROOT}; }\n")
    result = run_render("--server-name", "a.example.com", "--template", str(template))
    assert result.returncode == 2
    assert "UNKNOWN_ROOT" in result.stderr


def test_upstreams_default_to_the_units_ports_and_must_differ(tmp_path: Path) -> None:
    def upstreams(*args: str) -> dict[str, list[str]]:
        result = run_render("--server-name", "studio.example.com", *args)
        assert result.returncode == 0, result.stderr
        return {u.args[0]: u.value("server").split() for u in parse(result.stdout).all("upstream")}

    # gunicorn and uvicorn as deploy/systemd/ starts them (WEB_PORT, WS_PORT).
    assert upstreams() == {HTTP_UPSTREAM: ["127.0.0.1:8010"], WS_UPSTREAM: ["127.0.0.1:8020"]}
    # Ports the environment file moved move here too; an explicit address wins.
    env = tmp_path / "env"
    env.write_text("WEB_PORT=9010\nWS_PORT=9020\n")
    assert upstreams("--env-file", str(env), "--ws-upstream", "unix:/run/ws.sock") == {
        HTTP_UPSTREAM: ["127.0.0.1:9010"],
        WS_UPSTREAM: ["unix:/run/ws.sock"],
    }
    # One address for both would send HTTP to uvicorn or WebSockets to gunicorn.
    result = run_render("--server-name", "a.example.com", "--http-upstream", "127.0.0.1:8020")
    assert result.returncode == 2
    assert "HTTP_UPSTREAM and WS_UPSTREAM" in result.stderr
    env.write_text("WEB_PORT=80x\n")
    result = run_render("--server-name", "a.example.com", "--env-file", str(env))
    assert result.returncode == 2
    assert "WEB_PORT" in result.stderr


def test_default_certificate_paths_are_certbots() -> None:
    result = run_render("--server-name", "studio.example.com")
    assert result.returncode == 0, result.stderr
    https = next(s for s in parse(result.stdout).all("server") if s.all("ssl_certificate"))
    live = "/etc/letsencrypt/live/studio.example.com"
    assert https.value("ssl_certificate") == f"{live}/fullchain.pem"
    assert https.value("ssl_certificate_key") == f"{live}/privkey.pem"
    assert "listen [::]:443" in result.stdout


def test_body_limit_is_the_products_upload_limit(site: Site, tmp_path: Path) -> None:
    # The default of assistant_site/settings/base.py, plus the 1 MiB multipart envelope.
    base = (REPO / "assistant_site/settings/base.py").read_text(encoding="utf-8")
    match = UPLOAD_MB_DEFAULT.search(base)
    assert match is not None
    upload_mb = int(match.group(1))
    assert site.https.value("client_max_body_size") == f"{upload_mb + 1}m"
    # An installation that raised the limit in its environment file gets it in nginx too.
    env = tmp_path / "env"
    env.write_text("# comment\nKNOWLEDGE_MAX_UPLOAD_MB=80\nDJANGO_HSTS_SECONDS='600'\n")
    result = run_render("--server-name", "studio.example.com", "--env-file", str(env))
    assert result.returncode == 0, result.stderr
    https = next(s for s in parse(result.stdout).all("server") if s.all("ssl_certificate"))
    assert https.value("client_max_body_size") == "81m"
    static = https.location("^~", "/static/")
    hsts = [h.args for h in static.all("add_header") if h.args[0] == "Strict-Transport-Security"]
    assert hsts == [
        ["Strict-Transport-Security", "max-age=600; includeSubDomains; preload", "always"]
    ]


def test_tls_is_12_and_13_with_forward_secret_aead_ciphers_only(site: Site) -> None:
    https = site.https
    assert https.value("ssl_protocols") == "TLSv1.2 TLSv1.3"
    ciphers = https.value("ssl_ciphers").split(":")
    assert ciphers
    for cipher in ciphers:
        assert cipher.startswith("ECDHE-"), cipher
        assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    assert https.value("ssl_session_tickets") == "off"
    assert all("http2" in listen.args for listen in https.all("listen"))


def test_port_80_redirects_to_https_except_acme_challenges(site: Site) -> None:
    plain = site.server(site.http_port)
    assert plain.location("/").value("return") == f"301 https://{SERVER_NAME}$request_uri"
    acme = plain.location("^~", "/.well-known/acme-challenge/")
    assert acme.value("root") == str(site.acme)
    assert not plain.all("ssl_certificate")


@pytest.mark.parametrize("path", ["/admin/", "/metrics", "/readyz"])
def test_operator_paths_allow_the_include_then_deny_everyone_else(site: Site, path: str) -> None:
    location = (
        site.https.location("^~", path) if path.endswith("/") else site.https.location("=", path)
    )
    names = [d.name for d in location.block or []]
    assert location.value("include") == str(site.allow)
    assert location.value("deny") == "all"
    assert names.index("include") < names.index("deny")
    assert location.value("proxy_pass") == f"http://{HTTP_UPSTREAM}"


def test_websocket_location_forwards_the_upgrade_with_long_timeouts(site: Site) -> None:
    ws = site.https.location("^~", "/ws/")
    assert ws.value("proxy_pass") == f"http://{WS_UPSTREAM}"
    headers = {d.args[0]: d.args[1] for d in ws.all("proxy_set_header")}
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "upgrade"
    # A location with its own proxy_set_header inherits none: the forwarding ones are here too.
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert ws.value("proxy_http_version") == "1.1"
    # The web chat's heartbeat is 30 s (connectors/webchat/consumers.py HEARTBEAT_S).
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        assert int(ws.value(name).removesuffix("s")) >= 600


def test_proxied_requests_carry_the_forwarding_headers(site: Site) -> None:
    headers = {d.args[0]: d.args[1] for d in site.https.all("proxy_set_header")}
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Host"] == "$host"


def test_only_websockets_go_to_uvicorn_and_everything_else_to_gunicorn(site: Site) -> None:
    upstreams = {u.args[0]: u.value("server") for u in site.parsed.all("upstream")}
    assert upstreams == {HTTP_UPSTREAM: "127.0.0.1:9", WS_UPSTREAM: "127.0.0.1:10"}
    # gunicorn's sync workers close every connection after its answer: nothing to keep open.
    http = next(u for u in site.parsed.all("upstream") if u.args[0] == HTTP_UPSTREAM)
    assert not http.all("keepalive")
    routes = {
        " ".join(location.args): location.value("proxy_pass")
        for location in site.https.all("location")
        if location.all("proxy_pass")
    }
    assert routes.pop("^~ /ws/") == f"http://{WS_UPSTREAM}"
    assert routes.pop("/") == f"http://{HTTP_UPSTREAM}"
    assert len(routes) >= 6  # /admin/, /metrics, /readyz and the rate-limited endpoints
    assert set(routes.values()) == {f"http://{HTTP_UPSTREAM}"}, routes
    # Nothing but /ws/ opens a WebSocket: no other location forwards the upgrade.
    upgrading = [
        location.args
        for location in site.https.all("location")
        if any(d.args[0] == "Upgrade" for d in location.all("proxy_set_header"))
    ]
    assert upgrading == [["^~", "/ws/"]]


def _location_for(https: Directive, path: str) -> Directive | None:
    for location in https.all("location"):
        if location.args[0] in {"~", "~*"} and re.search(location.args[1], path):
            return location
    return None


def test_connector_endpoints_are_rate_limited_with_429(site: Site) -> None:
    workflow = uuid.uuid4()
    paths = [
        reverse("connectors:events", kwargs={"pk": 12}),
        reverse("connectors:webchat-session", kwargs={"pk": 12}),
        reverse("workflows:workflow-webhook", kwargs={"pk": workflow, "node_id": "hook_1"}),
        reverse(
            "workflows:workflow-webhook-run",
            kwargs={"pk": workflow, "node_id": "hook_1", "run_id": uuid.uuid4()},
        ),
    ]
    zones = {
        d.args[1].removeprefix("zone=").split(":")[0] for d in site.parsed.all("limit_req_zone")
    }
    for path in paths:
        location = _location_for(site.https, path)
        assert location is not None, path
        limit = location.one("limit_req")
        assert limit.args[0].removeprefix("zone=") in zones
        assert location.value("limit_req_status") == "429"
        assert location.value("proxy_pass") == f"http://{HTTP_UPSTREAM}"
    for path in ["/connectors/12/other", "/api/workflows/", "/studio/", "/connectors/x/events"]:
        assert _location_for(site.https, path) is None, path


def test_static_files_are_served_from_disk_with_long_cache_for_hashed_names(site: Site) -> None:
    static = site.https.location("^~", "/static/")
    assert static.value("alias") == f"{site.static}/"
    cache_map = next(m for m in site.parsed.all("map") if m.args[0] == "$uri")
    rules = {d.name: d.args[0] for d in cache_map.block or []}
    hashed = [pattern for pattern in rules if pattern.startswith("~")]
    assert len(hashed) == 1
    assert re.search(hashed[0][1:], f"/static/{HASHED_STATIC}")
    assert not re.search(hashed[0][1:], "/static/js/app.js")
    assert "immutable" in rules[hashed[0]]
    assert rules["default"] == "no-cache"


def test_security_headers_are_left_to_django_on_proxied_responses(site: Site) -> None:
    # Django's SecurityMiddleware, XFrameOptionsMiddleware and the CSP middleware set them on
    # every response it makes; nginx adds headers only where it serves files itself.
    assert not site.https.all("add_header")
    for location in site.https.all("location"):
        if location.all("proxy_pass"):
            assert not location.all("add_header"), location.args


def nginx_test(site: Site) -> None:
    """`nginx -t`: the whole configuration is valid, certificates and include files load."""
    assert NGINX is not None
    result = subprocess.run(
        [NGINX, "-t", "-c", str(site.main), "-p", f"{site.root}/"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # No warning either (a deprecated or ignored directive, a duplicate MIME type...).
    assert "[warn]" not in result.stderr, result.stderr


def test_nginx_accepts_the_rendered_configuration(site: Site) -> None:
    require_service(NGINX is not None, "nginx (apt-get install nginx)")
    nginx_test(site)


def test_brotli_is_off_unless_asked_for(site: Site, tmp_path: Path) -> None:
    assert not site.https.all("brotli")
    with_brotli = build_site(tmp_path / "brotli", brotli=True)
    assert with_brotli.https.value("brotli") == "on"
    assert "application/json" in with_brotli.https.one("brotli_types").args
    # Optional: only where Debian's module is installed (libnginx-mod-http-brotli-filter).
    if NGINX is None or not BROTLI_MODULE.exists():
        pytest.skip("the nginx brotli module is not installed: its directives are not tried")
    nginx_test(with_brotli)


# --- nginx running in front of a recording upstream ------------------------------------------


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.name = name
        self.seen: list[tuple[str, dict[str, str]]] = []

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


class _UpstreamHandler(socketserver.StreamRequestHandler):
    """Records each request's path and headers. HTTP: 200 with them and the upstream's name
    as JSON, plus a header of its own (to catch nginx doubling it). /ws/: 101, then echoes
    what it receives. Either upstream answers both ways: the test tells which one was asked."""

    server: _Upstream

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").strip()
        if not request_line:
            return
        path = request_line.split(" ")[1]
        headers: dict[str, str] = {}
        while line := self.rfile.readline().decode("latin-1").strip():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.server.seen.append((path, headers))
        if path.startswith("/ws/"):
            self.wfile.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            self.wfile.flush()
            while data := self.request.recv(4096):
                self.request.sendall(data)
            return
        length = int(headers.get("content-length", "0"))
        if length:
            self.rfile.read(length)
        payload: dict[str, object] = {
            "upstream": self.server.name,
            "path": path,
            "headers": headers,
        }
        if "big" in path:
            payload["padding"] = "x" * 8192
        body = json.dumps(payload).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Strict-Transport-Security: max-age=31536000; includeSubDomains; preload\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


@dataclass
class Live:
    site: Site
    http_server: _Upstream  # stands for gunicorn
    ws_server: _Upstream  # stands for uvicorn

    def reached(self, path: str) -> list[str]:
        """The names of the upstreams that received a request for ``path``."""
        return [u.name for u in (self.http_server, self.ws_server) if path in u.paths()]

    def context(self) -> ssl.SSLContext:
        # Verifies that nginx presents our certificate; the name is checked by the config tests.
        context = ssl.create_default_context(cafile=str(self.site.cert))
        context.check_hostname = False
        return context

    def https(self, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.site.https_port,
            context=self.context(),
            timeout=10,
            source_address=(source, 0),
        )

    def get(
        self, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = self.https(source)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_service(NGINX is not None, "nginx (apt-get install nginx)")
    assert NGINX is not None
    upstreams = [_Upstream("http"), _Upstream("ws")]
    for upstream in upstreams:
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http, ws = upstreams
    site = build_site(
        tmp_path_factory.mktemp("nginx") / "site",
        http_upstream=f"127.0.0.1:{http.server_address[1]}",
        ws_upstream=f"127.0.0.1:{ws.server_address[1]}",
        ipv6=False,
    )
    process = subprocess.Popen(
        [NGINX, "-c", str(site.main), "-p", f"{site.root}/", "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(site.https_port, timeout=20)
        wait_for_port(site.http_port, timeout=20)
        yield Live(site, http, ws)
    finally:
        process.terminate()
        process.wait(timeout=20)
        for upstream in upstreams:
            upstream.shutdown()
            upstream.server_close()


def test_live_http_redirects_to_https_and_serves_acme_challenges(live: Live) -> None:
    token = live.site.acme / ".well-known" / "acme-challenge" / "t0ken"
    token.parent.mkdir(parents=True)
    token.write_text("t0ken.thumbprint")
    connection = http.client.HTTPConnection("127.0.0.1", live.site.http_port, timeout=10)
    try:
        connection.request("GET", "/studio/?x=1", headers={"Host": "evil.example"})
        response = connection.getresponse()
        response.read()
        assert response.status == 301
        assert response.headers["Location"] == f"https://{SERVER_NAME}/studio/?x=1"
        connection.request("GET", "/.well-known/acme-challenge/t0ken")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"t0ken.thumbprint")
    finally:
        connection.close()


def test_live_tls_refuses_old_protocols_and_weak_ciphers(live: Live) -> None:
    def handshake(version: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers(ciphers)
        context.minimum_version = context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", live.site.https_port), 10) as raw,
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
        ):
            return str(tls.version())

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    # The client offers TLS 1.1 (security level 0 allows it): the server's alert refuses it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            handshake(ssl.TLSVersion.TLSv1_1)
    # TLS 1.2 with only a CBC cipher without forward secrecy: no shared cipher.
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        handshake(ssl.TLSVersion.TLSv1_2, "AES128-SHA:@SECLEVEL=0")


def test_live_admin_and_metrics_are_refused_outside_the_allow_list(live: Live) -> None:
    for path in ["/admin/", "/admin/login/", "/metrics", "/readyz"]:
        status, _, _ = live.get(path, source="127.0.0.2")
        assert status == 403, path
        status, _, body = live.get(path, source="127.0.0.1")
        assert status == 200, path
        assert json.loads(body)["path"] == path
    # Not the rest of the site.
    assert live.get("/studio/", source="127.0.0.2")[0] == 200


def test_live_forwards_client_address_scheme_and_request_id(live: Live) -> None:
    status, headers, body = live.get(
        "/api/big/", headers={"X-Forwarded-For": "198.51.100.7", "Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    seen = json.loads(gzip.decompress(body))["headers"]
    # A forged hop stays in front; the last hop, which TRUSTED_PROXIES=1 reads, is the client.
    assert seen["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])
    assert "upgrade" not in seen
    # Django's HSTS header passes through once, not doubled by nginx.
    assert len(headers.get_all("Strict-Transport-Security") or []) == 1


def _open_websocket(live: Live, path: str) -> ssl.SSLSocket:
    """A TLS connection to nginx that has sent a WebSocket upgrade request for ``path``."""
    raw = socket.create_connection(("127.0.0.1", live.site.https_port), 10)
    tls = live.context().wrap_socket(raw, server_hostname=SERVER_NAME)
    tls.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return tls


def test_live_websocket_upgrade_is_forwarded_to_the_ws_upstream(live: Live) -> None:
    with _open_websocket(live, "/ws/ping/") as tls:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
        # The tunnel carries bytes both ways once upgraded.
        tls.sendall(b"frame-bytes")
        assert tls.recv(4096) == b"frame-bytes"
    # uvicorn's upstream got it, gunicorn's did not.
    assert live.reached("/ws/ping/") == ["ws"]
    seen = next(headers for path, headers in live.ws_server.seen if path == "/ws/ping/")
    assert seen["upgrade"] == "websocket"
    assert seen["connection"].lower() == "upgrade"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/studio/?tab=runs"),
        ("GET", "/api/workflows/"),
        ("POST", "/api/workflows/0b7d6c1e-9a41-4c1f-8a7e-2f1d3c4b5a69/hooks/hook_2/?wait=30"),
        ("POST", "/connectors/8/events"),
        ("POST", "/connectors/8/webchat/session"),
        ("GET", "/chat/8/"),
        ("GET", "/admin/login/"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("GET", "/healthz"),
        # Only the exact /ws/ prefix is uvicorn's.
        ("GET", "/wsx/"),
        ("GET", "/api/ws/"),
    ],
)
def test_live_http_goes_to_the_http_upstream_only(live: Live, method: str, path: str) -> None:
    # The operators' paths from an allowed address; the rest from one of its own, whose rate
    # limits the bursts of the 429 tests have not used up.
    operators = path.startswith(("/admin/", "/metrics", "/readyz"))
    connection = live.https(source="127.0.0.1" if operators else "127.0.0.3")
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200
    assert (body["upstream"], body["path"]) == ("http", path)
    assert live.reached(path) == ["http"]


@pytest.mark.parametrize("path", ["/ws/runs/5b0c/", "/ws/chat/8/"])
def test_live_every_websocket_path_goes_to_the_ws_upstream_only(live: Live, path: str) -> None:
    with _open_websocket(live, path) as tls:
        assert tls.recv(4096).startswith(b"HTTP/1.1 101 ")
    assert live.reached(path) == ["ws"]


@pytest.mark.parametrize(
    "path",
    [
        "/connectors/7/events",
        "/connectors/7/webchat/session",
        "/api/workflows/0b7d6c1e-9a41-4c1f-8a7e-2f1d3c4b5a69/hooks/hook_1/",
    ],
)
def test_live_connector_endpoints_answer_429_after_a_burst(live: Live, path: str) -> None:
    connection = live.https()
    statuses = []
    try:
        # More than any zone's burst (at most 100) plus what its rate refills meanwhile.
        for _ in range(160):
            connection.request("POST", path, body=b"{}")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            if response.status == 429:
                break
            if response.will_close:
                connection.close()
                connection = live.https()
    finally:
        connection.close()
    assert statuses[0] == 200
    assert statuses[-1] == 429, statuses


def _status_for_declared_length(live: Live, path: str, length: int) -> int:
    """nginx compares Content-Length with client_max_body_size before reading the body."""
    with (
        socket.create_connection(("127.0.0.1", live.site.https_port), 10) as raw,
        live.context().wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        tls.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        return int(tls.recv(4096).split(b" ", 2)[1])


def test_live_body_limits(live: Live) -> None:
    limit = int(live.site.https.value("client_max_body_size").removesuffix("m")) * 1024 * 1024
    assert (
        _status_for_declared_length(live, "/api/knowledge-bases/1/documents/upload/", limit + 1)
        == 413
    )
    assert _status_for_declared_length(live, "/connectors/3/events", 1024 * 1024 + 1) == 413


def test_live_static_files_with_cache_and_security_headers(live: Live) -> None:
    hashed = live.site.static / HASHED_STATIC
    hashed.parent.mkdir(parents=True)
    hashed.write_text("console.log('hashed');\n" * 100)
    with gzip.open(f"{hashed}.gz", "wb") as packed:  # what whitenoise's collectstatic writes
        packed.write(hashed.read_bytes())
    (live.site.static / "robots.txt").write_text("User-agent: *\n")

    status, headers, body = live.get(f"/static/{HASHED_STATIC}", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == hashed.read_bytes()
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, headers, _ = live.get("/static/robots.txt")
    assert (status, headers["Cache-Control"]) == (200, "no-cache")
    assert live.get("/static/missing.js")[0] == 404
    # Nothing under /static/ reaches the application.
    for upstream in (live.http_server, live.ws_server):
        assert not [path for path in upstream.paths() if path.startswith("/static/")]


def test_live_nginx_logged_no_errors(live: Live) -> None:
    time.sleep(0.2)
    log = (live.site.root / "logs" / "error.log").read_text(encoding="utf-8")
    assert "[emerg]" not in log
    assert "[crit]" not in log

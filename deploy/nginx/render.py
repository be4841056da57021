#!/usr/bin/env python3
"""Render the nginx site template (assistant-studio.conf) into a configuration file.

    python3 deploy/nginx/render.py --server-name studio.example.com \\
        --env-file /etc/assistant-studio/env -o /etc/nginx/sites-available/assistant-studio.conf

Standard library only, so the system python3 runs it. Each ``${NAME}`` placeholder of the
template is replaced; nginx's own ``$variables`` (never written with braces there) are left
alone. Unlike envsubst, a placeholder without a value or a value that could break out of its
directive (whitespace, ";", braces, quotes) stops the rendering with a message.

The request body limit and the HSTS lifetime come from the application's environment file
(the one the systemd units read), so nginx and the application agree on them; so do the ports
of the two upstreams, gunicorn for HTTP (WEB_PORT, 8010) and uvicorn for /ws/ (WS_PORT, 8020),
unless --http-upstream or --ws-upstream name them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "assistant-studio.conf"
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")

# Defaults of assistant_site/settings/base.py (tests/deploy/test_nginx.py checks they agree).
DEFAULT_UPLOAD_MB = 50  # KNOWLEDGE_MAX_UPLOAD_MB
DEFAULT_HSTS_SECONDS = 31_536_000  # DJANGO_HSTS_SECONDS when DJANGO_HTTPS is on
DEFAULT_VAR_DIR = "/var/lib/assistant-studio"
# Defaults of deploy/systemd/assistant-studio-web.service (gunicorn, HTTP) and
# assistant-studio-ws.service (uvicorn, /ws/); tests/deploy/test_systemd_units.py checks them.
DEFAULT_WEB_PORT = 8010  # WEB_PORT
DEFAULT_WS_PORT = 8020  # WS_PORT
# Room for the multipart envelope around an uploaded file of exactly the limit.
ENVELOPE_MB = 1

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_UPSTREAM = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$|^unix:/[^\s;{}'\"]+$")
_PATH = re.compile(r"^/[^\s;{}'\"$]*$")


class RenderError(Exception):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile= reads them (comments, quotes)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _int_setting(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise RenderError(f"{name}={raw!r} in the environment file is not a whole number")
    return int(raw)


def _check(name: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise RenderError(f"{name}={value!r} is not {what}")
    return value


def values_from(args: argparse.Namespace) -> dict[str, str]:
    env = read_env_file(Path(args.env_file)) if args.env_file else {}
    server_name = _check("SERVER_NAME", args.server_name, _HOST, "a host name")
    upload_mb = _int_setting(env, "KNOWLEDGE_MAX_UPLOAD_MB", DEFAULT_UPLOAD_MB)
    https = env.get("DJANGO_HTTPS", "true").strip().lower() != "false"
    hsts = _int_setting(env, "DJANGO_HSTS_SECONDS", DEFAULT_HSTS_SECONDS if https else 0)
    var_dir = env.get("VAR_DIR", "").strip() or DEFAULT_VAR_DIR
    live = f"/etc/letsencrypt/live/{server_name}"
    paths = {
        "ADMIN_ALLOW": args.admin_allow,
        "TLS_CERT": args.tls_cert or f"{live}/fullchain.pem",
        "TLS_KEY": args.tls_key or f"{live}/privkey.pem",
        "ACME_ROOT": args.acme_root.rstrip("/") or "/",
        "STATIC_ROOT": (args.static_root or f"{var_dir}/static").rstrip("/"),
        "LOG_DIR": args.log_dir.rstrip("/"),
    }
    values = {name: _check(name, value, _PATH, "an absolute path") for name, value in paths.items()}
    for name, port in (("HTTP_PORT", args.http_port), ("HTTPS_PORT", args.https_port)):
        if not 0 < port < 65536:
            raise RenderError(f"{name}={port} is not a port number")
        values[name] = str(port)
    upstreams = {
        "HTTP_UPSTREAM": args.http_upstream
        or f"127.0.0.1:{_int_setting(env, 'WEB_PORT', DEFAULT_WEB_PORT)}",
        "WS_UPSTREAM": args.ws_upstream
        or f"127.0.0.1:{_int_setting(env, 'WS_PORT', DEFAULT_WS_PORT)}",
    }
    for name, upstream in upstreams.items():
        values[name] = _check(name, upstream, _UPSTREAM, "host:port or unix:/path")
    if values["HTTP_UPSTREAM"] == values["WS_UPSTREAM"]:
        raise RenderError(
            f"HTTP_UPSTREAM and WS_UPSTREAM are both {values['HTTP_UPSTREAM']}: HTTP goes to "
            "gunicorn and /ws/ to uvicorn, two servers on two addresses"
        )
    values |= {
        "SERVER_NAME": server_name,
        "MAX_BODY_SIZE": f"{upload_mb + ENVELOPE_MB}m",
        "HSTS_SECONDS": str(hsts),
    }
    return values


BROTLI_MARK = "# [brotli] "


def render(
    template: str, values: dict[str, str], *, ipv6: bool = True, brotli: bool = False
) -> str:
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise RenderError(f"the template uses placeholders without a value: {missing}")
    text = PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    if not ipv6:
        text = "".join(
            line
            for line in text.splitlines(keepends=True)
            if not line.strip().startswith("listen [::]")
        )
    if brotli:
        # The template carries the brotli directives commented out: nginx without the
        # module refuses them.
        text = text.replace(BROTLI_MARK, "")
    header = "# Rendered by deploy/nginx/render.py: edit the template and render again.\n"
    return header + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-name", required=True, help="public host name (SERVER_NAME)")
    parser.add_argument(
        "--http-upstream",
        help="gunicorn's host:port or unix:/path, for everything but /ws/ "
        f"(default: 127.0.0.1:WEB_PORT from the environment file, else {DEFAULT_WEB_PORT})",
    )
    parser.add_argument(
        "--ws-upstream",
        help="uvicorn's host:port or unix:/path, for the WebSockets under /ws/ "
        f"(default: 127.0.0.1:WS_PORT from the environment file, else {DEFAULT_WS_PORT})",
    )
    parser.add_argument(
        "--env-file", help="the application's environment file (/etc/assistant-studio/env)"
    )
    parser.add_argument(
        "--admin-allow",
        default="/etc/nginx/assistant-studio/allow-admin.conf",
        help="include file with the allow lines for /admin/, /metrics, /readyz",
    )
    parser.add_argument("--tls-cert", help="default: /etc/letsencrypt/live/NAME/fullchain.pem")
    parser.add_argument("--tls-key", help="default: /etc/letsencrypt/live/NAME/privkey.pem")
    parser.add_argument("--acme-root", default="/var/www/letsencrypt", help="certbot webroot")
    parser.add_argument("--static-root", help="default: VAR_DIR/static from the environment file")
    parser.add_argument("--log-dir", default="/var/log/nginx")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument(
        "--no-ipv6", action="store_true", help="leave out the [::] listen lines (no IPv6 host)"
    )
    parser.add_argument(
        "--brotli",
        action="store_true",
        help="turn on brotli compression (needs libnginx-mod-http-brotli-filter)",
    )
    parser.add_argument("--template", default=str(TEMPLATE))
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        text = render(
            Path(args.template).read_text(encoding="utf-8"),
            values_from(args),
            ipv6=not args.no_ipv6,
            brotli=args.brotli,
        )
    except (RenderError, OSError) as exc:
        sys.stderr.write(f"render.py: {exc}\n")
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

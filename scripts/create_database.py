"""Create the PostgreSQL database named in DATABASE_URL if it does not exist yet."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def main(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        return
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not found:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"==> created PostgreSQL database {name!r}")
    except psycopg.OperationalError as exc:
        sys.exit(f"cannot reach PostgreSQL at DATABASE_URL ({exc}); start it or unset DATABASE_URL")


if __name__ == "__main__":
    main(sys.argv[1])

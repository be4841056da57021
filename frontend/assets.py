"""The built bundle: Vite writes hashed file names into dist/.vite/manifest.json; pages ask
for an entry ("studio", "chat", "widget") and get the script and stylesheet tags."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

ENTRY_SOURCES = {
    "studio": "src/studio/main.tsx",
    "chat": "src/chat/page.tsx",
    "widget": "src/chat/widget.tsx",
}


class BundleMissingError(RuntimeError):
    """The frontend was not built (`npm ci && npm run build` in frontend/)."""


def manifest_path() -> Path:
    return Path(settings.FRONTEND_DIST) / ".vite" / "manifest.json"


def _read_manifest() -> dict[str, Any]:
    path = manifest_path()
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise BundleMissingError(
            f"the editor's bundle is not built ({path} is missing): run "
            "`npm ci && npm run build` in frontend/ (scripts/run.sh does)"
        ) from exc


@lru_cache(maxsize=1)
def _cached_manifest(path: Path, mtime: float) -> dict[str, Any]:
    return _read_manifest()


def manifest() -> dict[str, Any]:
    """The manifest, re-read when a rebuild changed it."""
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return _read_manifest()  # raises BundleMissingError
    return _cached_manifest(path, mtime)


def entry_files(entry: str) -> tuple[str, list[str]]:
    """(script path, stylesheet paths) of an entry, relative to STATIC_URL."""
    chunks = manifest()
    chunk = chunks[ENTRY_SOURCES[entry]]
    styles: list[str] = []
    seen: set[str] = set()

    def collect(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        item = chunks[key]
        styles.extend(item.get("css", []))
        for imported in item.get("imports", []):
            collect(imported)

    collect(ENTRY_SOURCES[entry])
    return str(chunk["file"]), styles


def entry_url(entry: str) -> str:
    return static(entry_files(entry)[0])


def entry_tags(entry: str) -> SafeString:
    script, styles = entry_files(entry)
    links = format_html_join(
        "", '<link rel="stylesheet" href="{}">', ((static(path),) for path in styles)
    )
    return format_html('{}<script type="module" src="{}"></script>', links, static(script))

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from frontend.assets import entry_tags

register = template.Library()


@register.simple_tag
def vite_entry(entry: str) -> SafeString:
    """`{% vite_entry "studio" %}`: the entry's stylesheet and module script tags."""
    return entry_tags(entry)

"""The customer's theme for the pages (kiosk, technician, manager): a name, a logo and colours.

A theme file (``PITSTOP_THEME``, default ``config/theme/default.yaml``) is validated on load: colours
are ``#rrggbb``, the logo a PNG, SVG or WebP file next to the theme file, at most 512 KiB. The gateway
serves it as ``/theme.css`` and ``/theme/logo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from config.loading import ConfigError, load_document

COLOURS = ("accent", "background", "surface", "text", "muted")
LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".webp": "image/webp"}
MAX_LOGO_BYTES = 512 * 1024
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Theme:
    name: str
    title: str  # shown in the kiosk's header, e.g. "Pitstop League"
    colours: dict[str, str]
    logo: bytes | None = None
    logo_type: str = ""

    def css(self) -> str:
        """CSS custom properties the pages' stylesheets read."""
        lines = [f"  --{name}: {value};" for name, value in self.colours.items()]
        return ":root {\n" + "\n".join(lines) + "\n}\n"


DEFAULT_COLOURS = {
    "accent": "#ffb400",
    "background": "#0f1720",
    "surface": "#17212c",
    "text": "#f3f6f9",
    "muted": "#9fb0c0",
}


def load_theme(path: Path) -> Theme:
    doc = load_document(path, "theme", {"theme", "version", "title", "logo", "colours"}, "the theme")
    top = doc.top
    title = top.value.get("title", "Pitstop League")
    if not isinstance(title, str) or not 1 <= len(title) <= 60 or any(c in title for c in "<>\n"):
        raise top.error("'title' must be 1-60 characters of text (no < > or line breaks)")
    colours = dict(DEFAULT_COLOURS)
    given = doc.section(top.value.get("colours", {}), "colours")
    given.only(COLOURS)
    for name, value in given.value.items():
        if not isinstance(value, str) or not _COLOUR.match(value):
            raise given.error(f"colour '{name}' must look like #1a2b3c, got {value!r}")
        colours[name] = value.lower()
    logo_name = top.value.get("logo")
    logo, logo_type = None, ""
    if logo_name is not None:
        if not isinstance(logo_name, str) or "/" in logo_name or logo_name.startswith("."):
            raise top.error("'logo' must be a file name next to the theme file")
        logo_path = path.parent / logo_name
        logo_type = LOGO_TYPES.get(logo_path.suffix.lower(), "")
        if not logo_type:
            raise top.error(f"'logo' must be a {', '.join(LOGO_TYPES)} file, got {logo_name!r}")
        try:
            logo = logo_path.read_bytes()
        except OSError as exc:
            raise ConfigError(path, top.line, f"cannot read the logo {logo_name!r}: {exc.strerror}") from None
        if len(logo) > MAX_LOGO_BYTES:
            raise top.error(f"the logo is {len(logo)} bytes; at most {MAX_LOGO_BYTES}")
    return Theme(doc.name, title, colours, logo, logo_type)

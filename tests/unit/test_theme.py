"""The pages' theme: the default loads with its logo; each invalid theme is refused with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loading import ConfigError
from config.settings import DEFAULT_THEME
from config.theme import MAX_LOGO_BYTES, load_theme

HEAD = "theme: t\nversion: 1\n"


def test_the_default_theme() -> None:
    theme = load_theme(DEFAULT_THEME)
    assert theme.title == "Pitstop League" and theme.logo_type == "image/svg+xml" and theme.logo
    assert "--accent: #ffb400;" in theme.css()


def test_colours_and_a_png_logo(tmp_path: Path) -> None:
    (tmp_path / "brand.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    (tmp_path / "theme.yaml").write_text(HEAD + "title: Acme Motors\nlogo: brand.png\ncolours: {accent: '#00AA55'}\n")
    theme = load_theme(tmp_path / "theme.yaml")
    assert (theme.title, theme.logo_type, theme.colours["accent"]) == ("Acme Motors", "image/png", "#00aa55")
    assert theme.colours["background"] == "#0f1720"  # the rest keep their defaults


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (HEAD + "colours: {accent: red}\n", "colour 'accent' must look like #1a2b3c, got 'red'"),
        (
            HEAD + "colours: {glow: '#ffffff'}\n",
            "unknown key(s): glow (allowed: accent, background, muted, surface, text)",
        ),
        (HEAD + "title: '<script>'\n", "'title' must be 1-60 characters of text (no < > or line breaks)"),
        (HEAD + "logo: ../etc/passwd\n", "'logo' must be a file name next to the theme file"),
        (HEAD + "logo: logo.gif\n", "'logo' must be a .png, .svg, .webp file, got 'logo.gif'"),
        (HEAD + "logo: missing.svg\n", "cannot read the logo 'missing.svg': No such file or directory"),
        (HEAD + "logo: big.png\n", f"the logo is {MAX_LOGO_BYTES + 1} bytes; at most {MAX_LOGO_BYTES}"),
    ],
)
def test_invalid_themes(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "big.png").write_bytes(b"0" * (MAX_LOGO_BYTES + 1))
    (tmp_path / "theme.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_theme(tmp_path / "theme.yaml")
    assert info.value.reason == reason

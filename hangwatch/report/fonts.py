"""A font with Chinese glyphs for the report's charts. matplotlib's default, DejaVu Sans, has
none, and matplotlib does not fall back to the system's fonts by itself: Chinese branch names
became boxes even with a CJK font installed. The font is added to matplotlib's font manager
and put first in its sans-serif list, DejaVu Sans behind it for the glyphs it lacks.

Where the font comes from: the `font_file` setting, else Debian's fonts-noto-cjk package
(installed by deploy/local/bootstrap.sh and deploy/Dockerfile), else other common CJK fonts."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

CANDIDATES: Final = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),  # Debian/Ubuntu fonts-noto-cjk
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),  # Arch, Fedora
    Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/System/Library/Fonts/PingFang.ttc"),
    Path("C:/Windows/Fonts/msyh.ttc"),
)


class FontMissing(RuntimeError):
    """No font with Chinese glyphs was found; the message says how to install one."""


@functools.cache
def use_cjk_font(font_file: Path | None = None) -> str:
    """Register the CJK font with matplotlib and make it the default; returns its family name."""
    from matplotlib import font_manager, rcParams

    paths = [font_file] if font_file else [p for p in CANDIDATES if p.is_file()]
    if not paths or not paths[0].is_file():
        raise FontMissing(f"no font with Chinese glyphs{f' at {font_file}' if font_file else ''}: install Debian's "
                          "fonts-noto-cjk (apt-get install fonts-noto-cjk) or set font_file (HANGWATCH_FONT_FILE)")
    font_manager.fontManager.addfont(str(paths[0]))
    name = font_manager.FontProperties(fname=str(paths[0])).get_name()
    rcParams["font.family"] = "sans-serif"
    rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
    rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212
    return name

"""The texts people read on the Grafana side, in zh-CN and en (texts.yaml beside this file):
dashboards, panels, columns and legends, alert rule summaries. One language per generation:
settings `language` (default zh-CN); the shipped files are zh-CN."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import yaml

LANGUAGES: Final = ("zh-CN", "en")
DEFAULT_LANGUAGE: Final = "zh-CN"
_FILE: Final = Path(__file__).with_name("texts.yaml")


def language(settings: Any) -> str:
    """The language of generated dashboards, rules and notifications: the settings' `language`
    (shared with the report and the CLI), zh-CN when the settings have none."""
    lang = str(getattr(settings, "language", DEFAULT_LANGUAGE) or DEFAULT_LANGUAGE)
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    return lang


@functools.cache
def _all() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = yaml.safe_load(_FILE.read_text(encoding="utf-8"))
    return data


class Texts:
    def __init__(self, lang: str) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
        self.lang = lang
        self._t = _all()[lang]

    def __call__(self, key: str, **fmt: Any) -> str:
        text = self._t[key]
        return text.format(**fmt) if fmt else text

    def column(self, name: str) -> str | None:
        """The display name of a result column (legends, table headers), None = as named."""
        return self._t.get(f"col.{name}")

    def columns(self) -> dict[str, str]:
        """Every column with a display name in this language."""
        return {k.removeprefix("col."): v for k, v in sorted(self._t.items()) if k.startswith("col.")}


def texts(lang: str) -> Texts:
    return Texts(lang)

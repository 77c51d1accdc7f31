"""The texts people read on the Grafana side (dashboards, panels, columns and legends, alert rule
summaries, notifications), in zh-CN and en: the `grafana.*` entries of the one glossary
(hangwatch/i18n/glossary.yaml, with a bank's own file laid over it). One language per
generation: settings `language` (default zh-CN); the shipped files are zh-CN."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from hangwatch.i18n.glossary import LANGUAGES, Words, load_glossary

DEFAULT_LANGUAGE: Final = "zh-CN"
PREFIX: Final = "grafana."
_COLUMN: Final = PREFIX + "col."


def language(settings: Any) -> str:
    """The language of generated dashboards, rules and notifications: the settings' `language`
    (shared with the report and the CLI), zh-CN when the settings have none."""
    lang = str(getattr(settings, "language", DEFAULT_LANGUAGE) or DEFAULT_LANGUAGE)
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    return lang


class Texts:
    def __init__(self, lang: str, glossary_file: Path | None = None) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
        self.lang = lang
        self._words: Words = load_glossary(glossary_file).words(lang)

    def __call__(self, key: str, **fmt: Any) -> str:
        return self._words.text(PREFIX + key, **fmt)

    def column(self, name: str) -> str | None:
        """The display name of a result column (legends, table headers), None = as named."""
        entry = self._words.glossary.text.get(_COLUMN + name)
        if entry is None or entry[self.lang] == name:
            return None
        return entry[self.lang]

    def columns(self) -> dict[str, str]:
        """Every column with a display name in this language."""
        out = {}
        for key in sorted(self._words.glossary.text):
            if key.startswith(_COLUMN) and (shown := self.column(key[len(_COLUMN):])) is not None:
                out[key[len(_COLUMN):]] = shown
        return out


def texts(lang: str, glossary_file: Path | None = None) -> Texts:
    return Texts(lang, glossary_file)

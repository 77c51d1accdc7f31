"""The glossary file's typed loader: the shipped glossary.yaml, with a bank's own file of the
same shape laid over it (entries it names win), checked so that every entry has every language."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

if TYPE_CHECKING:
    from hangwatch.platform.settings import Settings

LANGUAGES: Final = ("zh-CN", "en")
SHIPPED: Final = Path(__file__).resolve().parent / "glossary.yaml"
_SECTIONS: Final = ("terms", "names", "text")

Entry = dict[str, str]  # language -> text


class GlossaryError(ValueError):
    """A glossary file that cannot be used; the message names the file and the entry."""


@dataclasses.dataclass(frozen=True, slots=True)
class Glossary:
    terms: Mapping[str, Entry]
    names: Mapping[str, Mapping[str, Entry]]  # kind -> code -> entry
    text: Mapping[str, Entry]

    def words(self, language: str) -> Words:
        if language not in LANGUAGES:
            raise GlossaryError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
        return Words(self, language)

    def entries(self) -> list[Entry]:
        """Every entry (for checks: which texts come from the glossary)."""
        return [*self.terms.values(), *(e for kind in self.names.values() for e in kind.values()),
                *self.text.values()]


@dataclasses.dataclass(frozen=True, slots=True)
class Words:
    """The glossary in one language."""

    glossary: Glossary
    language: str

    def term(self, key: str) -> str:
        try:
            return self.glossary.terms[key][self.language]
        except KeyError:
            raise GlossaryError(f"the glossary has no term {key!r}") from None

    def name(self, kind: str, code: Any) -> str:
        """The display name of a code (a branch, an outcome, ...); the code itself when it has none."""
        if code is None:
            return self.glossary.names.get("none", {}).get("(none)", {}).get(self.language, "-")
        entry = self.glossary.names.get(kind, {}).get(str(code)) or self.glossary.names.get("none", {}).get(str(code))
        return entry[self.language] if entry else str(code)

    def text(self, key: str, **values: Any) -> str:
        try:
            template = self.glossary.text[key][self.language]
        except KeyError:
            raise GlossaryError(f"the glossary has no text {key!r}") from None
        return template.format(**values) if values else template

    def join(self, parts: list[str]) -> str:
        return self.text("list.separator").join(parts)


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict) or set(raw) != set(LANGUAGES) or not all(isinstance(v, str) for v in raw.values()):
        raise GlossaryError(f"{where}: expected one text per language ({', '.join(LANGUAGES)}), got {raw!r}")
    return dict(raw)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise GlossaryError(f"{path}: cannot read the glossary: {e}") from None
    if not isinstance(data, dict):
        raise GlossaryError(f"{path}: expected a mapping with {', '.join(_SECTIONS)}")
    unknown = set(data) - {*_SECTIONS, "languages"}
    if unknown:
        raise GlossaryError(f"{path}: unknown section(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"expected {', '.join(_SECTIONS)}")
    return data


@functools.cache
def load_glossary(override: Path | None = None) -> Glossary:
    """The shipped glossary with `override` (a bank's file) laid over it."""
    terms: dict[str, Entry] = {}
    names: dict[str, dict[str, Entry]] = {}
    text: dict[str, Entry] = {}
    for path in (SHIPPED, *([override] if override else [])):
        data = _read(path)
        for key, raw in (data.get("terms") or {}).items():
            terms[str(key)] = _entry(raw, f"{path}: terms.{key}")
        for kind, codes in (data.get("names") or {}).items():
            if not isinstance(codes, dict):
                raise GlossaryError(f"{path}: names.{kind}: expected a mapping of code to names")
            for code, raw in codes.items():
                names.setdefault(str(kind), {})[str(code)] = _entry(raw, f"{path}: names.{kind}.{code}")
        for key, raw in (data.get("text") or {}).items():
            text[str(key)] = _entry(raw, f"{path}: text.{key}")
    return Glossary(terms, names, text)


def words_for(settings: Settings, language: str | None = None) -> Words:
    """The configured glossary in `language` (default: settings.language)."""
    return load_glossary(settings.glossary_file).words(language or settings.language)

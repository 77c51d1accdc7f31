"""Every document the project cites exists: a path ending in `.md` named in a tracked source,
script, configuration or document file, every relative link of a markdown file, and the
anchor or quoted section that goes with them (`docs/contract.md, "Default borrower rules"`,
`[...](storage.md#tables)`). No citation may lead outside the repository: the project stands
alone."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".txt"}
TEXT_NAMES = {"Makefile", "Dockerfile"}
SKIP_DIRS = ("bench/results/",)  # recorded output, not documentation
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples are not citations

# A path ending in .md, not part of a URL or a longer path (`../x.md` is caught too), with an
# optional #anchor and an optional quoted section right after it: `x.md, "Section"`.
MD_PATH = re.compile(r"(?<![\w/.:-])((?:\.\.?/)*[\w.-]*\w(?:/[\w.-]+)*\.md)\b(#[\w-]+)?(?:,\s*\"([^\"\n]+)\")?")
MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")



def _tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or name == SELF or name.startswith(SKIP_DIRS) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(name)
    return files


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def _sections(md: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(anchors, heading texts in lower case) of a markdown file; code blocks are skipped."""
    anchors: set[str] = set()
    titles: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else HEADING.match(line)
        if m:
            title = m.group(2)
            titles.add(title.strip("`").lower())
            base = slug(title)
            n = counts.get(base, 0)
            counts[base] = n + 1
            anchors.add(base if n == 0 else f"{base}-{n}")
    return frozenset(anchors), frozenset(titles)


def _resolve(citing: str, target: str) -> Path | None:
    """The cited file: relative to the citing file's folder, or to the repository root."""
    for base in (ROOT / citing).parent, ROOT:
        p = (base / target).resolve()
        if p.exists():
            return p
    return None


def _outside(p: Path) -> bool:
    return not p.is_relative_to(ROOT)


def _citations(name: str) -> Iterator[tuple[str, str | None, str | None]]:
    """(target, anchor, quoted section) of every citation in one file."""
    text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
    for m in MD_PATH.finditer(text):
        yield m.group(1), (m.group(2) or "")[1:] or None, m.group(3)
    if name.endswith(".md"):
        in_code = False
        for line in text.splitlines():
            if FENCE.match(line):
                in_code = not in_code
                continue
            if in_code:
                continue
            for link in MD_LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
                    continue
                target, _, anchor = link.partition("#")
                yield target or name, anchor or None, None


def _problems() -> list[str]:
    problems: list[str] = []
    for name in _tracked_text_files():
        for target, anchor, section in _citations(name):
            if target == name:
                path: Path | None = ROOT / name
            else:
                path = _resolve(name, target)
            if path is None:
                problems.append(f"{name}: cites {target}, which does not exist")
                continue
            if _outside(path):
                problems.append(f"{name}: cites {target}, outside the repository")
                continue
            if path.suffix != ".md" or path.is_dir():
                continue
            anchors, titles = _sections(path)
            if anchor and anchor not in anchors:
                problems.append(f"{name}: {target}#{anchor}: no such heading (have: {sorted(anchors)})")
            if section and section.lower() not in titles:
                problems.append(f'{name}: {target}, "{section}": no such heading in {target}')
    return problems


def test_every_cited_document_exists() -> None:
    problems = _problems()
    assert not problems, "documents cited but absent:\n" + "\n".join(problems)


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Default borrower rules", "default-borrower-rules"),
    ("The sink (`hangwatch sink`)", "the-sink-hangwatch-sink"),
    ("The event: CallOutcome v1", "the-event-calloutcome-v1"),
    ("Alert rules (folder hangwatch, every 60 s)", "alert-rules-folder-hangwatch-every-60-s"),
    ("\"Hang-up risk — live\" (refresh 10 s)", "hang-up-risk--live-refresh-10-s"),
])
def test_slug_follows_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_scanner_sees_what_it_must() -> None:
    """A wrong path, a link outside the repository and a missing section are all reported."""
    pattern_hits = [m.group(1, 2, 3) for m in MD_PATH.finditer(
        'see docs/nothing.md and ../outside/docs/x.md#a, not https://example.org/y.md; docs/contract.md, "Nope"')]
    assert pattern_hits == [("docs/nothing.md", None, None), ("../outside/docs/x.md", "#a", None),
                            ("docs/contract.md", None, "Nope")]
    assert _resolve("README.md", "docs/nothing.md") is None
    assert _outside(ROOT.parent / "shared" / "docs" / "x.md") and not _outside(ROOT / "docs" / "contract.md")
    _, titles = _sections(ROOT / "docs" / "contract.md")
    assert "default borrower rules" in titles and "nope" not in titles

"""Every data file the package reads at run time ships in the wheel: each tracked non-Python
file inside a package of hangwatch (through the links to the top-level folders) is matched by
that package's package-data globs in pyproject.toml."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = {"streams": "hangwatch.streams", "sinks": "hangwatch.sinks", "schemas": "hangwatch.schemas",
          "simulator": "hangwatch.simulator"}
IGNORED_SUFFIXES = {".py", ".pyi", ".md", ".typed"}


def _package_of(path: Path) -> tuple[str, str] | None:
    """(dotted package, path relative to it) of the deepest package holding `path`."""
    parts = path.parts
    top = LINKED.get(parts[0]) or ("hangwatch" if parts[0] == "hangwatch" else None)
    if top is None:
        return None
    base = [ROOT / parts[0]]
    names = [top]
    for i, part in enumerate(parts[1:-1], start=1):
        d = ROOT.joinpath(*parts[: i + 1])
        if not (d / "__init__.py").exists():
            break
        base.append(d)
        names.append(f"{names[-1]}.{part}")
    return names[-1], str(path.relative_to(base[-1].relative_to(ROOT)))


def test_every_data_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    missing = []
    for name in files:
        path = Path(name)
        if path.suffix in IGNORED_SUFFIXES or (ROOT / path).is_symlink():
            continue
        found = _package_of(path)
        if found is None:
            continue
        package, rel = found
        patterns = globs.get(package, [])
        # setuptools globs: "**" spans directories; fnmatch's "*" already does
        if not any(fnmatch.fnmatch(rel, p.replace("**/", "*")) or fnmatch.fnmatch(rel, p) for p in patterns):
            missing.append(f"{name} ({package}: {rel})")
    assert not missing, "data files not in package-data (the wheel would lack them):\n" + "\n".join(missing)

"""The house rules, checked on the source: floors only import downwards, streams and sinks never
import each other, the pure core imports only what it may, and the checkout's top-level folders
cannot be imported a second time under their short names."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hangwatch"

# Floor of each subpackage; a module may import its own floor and the ones below.
FLOORS = {
    "hangwatch.schemas": 0,
    "hangwatch.platform": 1,
    "hangwatch.analytics": 1,  # pure statistics over counts (stdlib only); used by the rooms and the application
    "hangwatch.streams": 2,
    "hangwatch.sinks": 2,
    "hangwatch.simulator": 2,
    "hangwatch.cli": 3,
    "hangwatch.grafana": 3,
    "hangwatch.report": 3,
    "hangwatch.i18n": 3,  # glossary, display names, explanations from facts (reads the rules' parameters)
    "hangwatch.exports": 3,
}
# Same floor, different rooms: these never import each other (they meet through topics and the contract).
APART = {"hangwatch.streams", "hangwatch.sinks", "hangwatch.simulator"}
CORE = "hangwatch.streams.core"
CORE_ALLOWED_THIRD_PARTY = {"orjson", "msgspec", "yaml"}


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (through the links to the top-level folders)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in the file (function bodies too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def _room(module: str) -> str | None:
    for room in sorted(FLOORS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


MODULES = _modules()


def test_every_module_has_a_floor() -> None:
    homeless = [m for m in MODULES if m not in ("hangwatch", "hangwatch.__main__") and _room(m) is None]
    assert not homeless, f"modules outside every floor (add them to FLOORS): {homeless}"


def test_floors_only_import_downwards() -> None:
    wrong = []
    for name, path in MODULES.items():
        room = _room(name)
        if room is None:
            continue
        for imported in _imports(name, path):
            target = _room(imported)
            if target is None or target == room:
                continue
            if FLOORS[target] > FLOORS[room]:
                wrong.append(f"{name} imports {imported} (floor {FLOORS[room]} -> {FLOORS[target]})")
            elif room in APART and target in APART:
                wrong.append(f"{name} imports {imported} ({room} and {target} never import each other)")
    assert not wrong, "imports against the floors:\n" + "\n".join(sorted(set(wrong)))


def test_core_imports_only_itself_the_contract_and_plain_libraries() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = []
    for name, path in MODULES.items():
        if not (name == CORE or name.startswith(CORE + ".")):
            continue
        for imported in _imports(name, path):
            top = imported.split(".")[0]
            if imported.startswith((CORE, "hangwatch.schemas")) or imported in ("hangwatch", "hangwatch.schemas"):
                continue
            if top in stdlib or top in CORE_ALLOWED_THIRD_PARTY:
                continue
            wrong.append(f"{name} imports {imported}")
    assert not wrong, "the pure core imports outside its allowed set:\n" + "\n".join(sorted(set(wrong)))


def test_the_package_root_imports_nothing() -> None:
    """`import hangwatch.streams.core` must not drag the application (or anything) in."""
    assert _imports("hangwatch", PACKAGE / "__init__.py") == set()


@pytest.mark.parametrize("short", ["streams", "sinks", "schemas", "simulator"])
def test_top_level_folders_are_not_importable_by_their_short_name(short: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the checkout on sys.path, `import streams` would load a second copy of
    hangwatch.streams (two module objects, two sets of metrics and class identities)."""
    monkeypatch.syspath_prepend(str(PACKAGE.parent))
    monkeypatch.delitem(sys.modules, short, raising=False)
    with pytest.raises(ImportError, match=f"import hangwatch.{short}"):
        importlib.import_module(short)


def test_faust_is_imported_only_by_its_adapter() -> None:
    """Faust stays behind one module, so the stages and the runtime run (and are tested) without it."""
    adapter = "hangwatch.streams.faust_adapter"
    wrong = sorted(f"{name} imports {imported}" for name, path in MODULES.items() if name != adapter
                   for imported in _imports(name, path) if imported.split(".")[0] in ("faust", "mode"))
    assert not wrong, "Faust outside its adapter:\n" + "\n".join(wrong)

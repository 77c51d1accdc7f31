"""The compiled build of the pure stream core (mypyc), and the check that keeps it honest.

The modules in `COMPILED` are plain, fully typed Python. mypyc (part of mypy, which black and
mypy itself ship compiled the same way) turns them into C extension modules; CPython loads an
extension module in preference to the .py beside it, so the same source runs 1.3-1.5x faster in
the rates, flags and merge stages (`python -m bench --only stages`). Nothing else changes: the
.py files stay the source of truth, and without a build everything runs as pure Python.

An extension built from an older source would silently run old code. So the build records the
SHA-256 of every compiled source in `streams/core/native-build.json`, and importing `streams.core`
calls `verify_core()`, which refuses to go on (StaleNativeBuild, with the command that fixes it)
when a compiled module's source changed since, or only part of the set is compiled.

`hangwatch native build|clean|status` (or `make native`) drives it. This module must not import
`streams`: it has to work while the compiled state is stale.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

# The folder that holds the `hangwatch` package (the checkout, or site-packages).
ROOT: Final = Path(__file__).resolve().parent.parent.parent
# The pure core, in dependency order. Only modules without Faust, Kafka or I/O: mypyc checks
# annotated types at run time, so everything here is covered by the core's unit tests.
COMPILED: Final = (
    "hangwatch.streams.core.rules_config",
    "hangwatch.streams.core.windows",
    "hangwatch.streams.core.positions",
    "hangwatch.streams.core.partition_rates",
    "hangwatch.streams.core.merge_rates",
    "hangwatch.streams.core.spikes",
    "hangwatch.streams.core.flags",
)
# mypyc puts the code of all modules in one shared library, named after the group; inside the
# package so that it is importable however the project is installed (editable or not).
GROUP: Final = "hangwatch.streams.core.native"
MANIFEST: Final = "hangwatch/streams/core/native-build.json"


class StaleNativeBuild(ImportError):
    """Compiled modules that do not match their source."""


@dataclass(frozen=True)
class CoreState:
    mode: Literal["pure", "compiled"]
    compiled: tuple[str, ...]  # modules that have an extension file
    stale: tuple[str, ...]  # compiled modules whose source changed since the build
    problem: str | None  # why the compiled state cannot be used, if it cannot


def _source(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _extensions(root: Path, module: str) -> list[Path]:
    base = root.joinpath(*module.split("."))
    return [p for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if (p := base.with_name(base.name + suffix)).exists()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inspect_core(root: Path = ROOT, modules: tuple[str, ...] = COMPILED) -> CoreState:
    """What is compiled, and whether it matches the sources."""
    compiled = tuple(m for m in modules if _extensions(root, m))
    if not compiled:
        return CoreState("pure", (), (), None)
    manifest_path = root / MANIFEST
    try:
        digests = json.loads(manifest_path.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return CoreState("compiled", compiled, compiled, f"{MANIFEST} is missing or unreadable")
    stale = tuple(m for m in compiled if digests.get(m) != _digest(_source(root, m)))
    missing = tuple(m for m in modules if m not in compiled)
    problem = None
    if stale:
        problem = f"changed since they were compiled: {', '.join(stale)}"
    elif missing:
        problem = f"only part of the core is compiled; missing: {', '.join(missing)}"
    return CoreState("compiled", compiled, stale, problem)


def verify_core(root: Path = ROOT, modules: tuple[str, ...] = COMPILED) -> CoreState:
    """Raise StaleNativeBuild unless the core is pure or compiled from its current source."""
    state = inspect_core(root, modules)
    if state.problem:
        raise StaleNativeBuild(
            f"the compiled stream core does not match its source ({state.problem}); "
            "rebuild it with `hangwatch native build` (make native) or remove it with "
            "`hangwatch native clean` to run the pure Python")
    return state


def clean(root: Path = ROOT) -> list[Path]:
    """Remove every compiled module of the core (and the shared library); back to pure Python."""
    removed: list[Path] = []
    for module in (*COMPILED, GROUP + "__mypyc"):
        for p in _extensions(root, module):
            p.unlink()
            removed.append(p)
    manifest = root / MANIFEST
    if manifest.exists():
        manifest.unlink()
        removed.append(manifest)
    return removed


def build(root: Path = ROOT, opt_level: int = 3) -> CoreState:
    """Compile COMPILED in place with mypyc, then record the sources' digests.

    Needs a C compiler and the Python headers; raises RuntimeError with the compiler's output
    when the build fails (the previous build is removed first, so a failure leaves pure Python)."""
    clean(root)
    paths = [str(_source(root, m).relative_to(root)) for m in COMPILED]
    # setuptools in a child process: its build_ext writes to the process's stdout/stderr, which
    # we keep for the error message instead of interleaving it with the caller's output.
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        "group, opt_level, temp, *paths = sys.argv[1:]\n"
        "setup(name='hangwatch-native', py_modules=[],\n"
        "      ext_modules=mypycify(paths, group_name=group, opt_level=opt_level, target_dir=temp),\n"
        "      script_args=['build_ext', '--inplace', '--build-temp', temp, '--build-lib', temp + '/lib'])\n"
    )
    # Generated C and object files in a scratch directory: nothing is left beside the sources
    # but the extension modules (the same code works in a checkout and in site-packages).
    with tempfile.TemporaryDirectory(prefix="hangwatch-native-") as temp:
        # mypy options ride in mypycify's path list; stated here, not left to a config file,
        # because an installed copy (the Docker image builds in site-packages) has none.
        proc = subprocess.run([sys.executable, "-c", script, GROUP, str(opt_level), temp,
                               "--ignore-missing-imports", *paths],
                              cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        clean(root)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"mypyc build failed (exit {proc.returncode}); the core stays pure Python:\n{tail}")
    sources = {m: _digest(_source(root, m)) for m in COMPILED}
    (root / MANIFEST).write_text(json.dumps({"mypyc_opt_level": opt_level, "python": sys.version.split()[0],
                                             "sources": sources}, indent=2) + "\n")
    return verify_core(root)

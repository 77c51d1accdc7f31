"""hangwatch.platform.native: the staleness check of the compiled core, and compiled == pure source.

The equivalence test runs whatever `streams.core` loaded (compiled by the test command, see
deploy/local/test.sh) next to the same modules loaded from their .py source under other names,
on simulated events with duplicates, out-of-order arrival and malformed messages, and compares
every output byte for byte: partial snapshots, state records, flags, borrower states, rate
updates. Without a build both sides are the source, and the check still runs."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import zlib
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

import hangwatch.streams.core.flags
import hangwatch.streams.core.merge_rates
import hangwatch.streams.core.partition_rates
from hangwatch.platform import native
from hangwatch.schemas.call_outcome import ContractError, decode
from hangwatch.simulator.config import FaultConfig, SimConfig
from hangwatch.simulator.generator import generate
from hangwatch.streams.core.rules_config import load_rules

EXT = ".cpython-311-x86_64-linux-gnu.so"


def _fake_root(tmp_path: Path, modules: dict[str, str]) -> Path:
    for name, text in modules.items():
        p = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def _compile_fake(root: Path, name: str) -> None:
    base = root.joinpath(*name.split("."))
    base.with_name(base.name + EXT).write_bytes(b"\x7fELF")


def _write_manifest(root: Path, modules: tuple[str, ...]) -> None:
    sources = {m: native._digest(native._source(root, m)) for m in modules}
    (root / native.MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / native.MANIFEST).write_text(json.dumps({"sources": sources}))


MODS = ("streams.core.a", "streams.core.b")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _fake_root(tmp_path, {"streams.core.a": "x = 1\n", "streams.core.b": "y = 2\n"})


def test_no_extension_is_pure(root: Path) -> None:
    state = native.verify_core(root, MODS)
    assert (state.mode, state.compiled, state.problem) == ("pure", (), None)


def test_build_matching_its_sources_is_used(root: Path) -> None:
    for m in MODS:
        _compile_fake(root, m)
    _write_manifest(root, MODS)
    state = native.verify_core(root, MODS)
    assert (state.mode, state.compiled, state.stale, state.problem) == ("compiled", MODS, (), None)


def test_source_edited_after_the_build_refuses_to_import(root: Path) -> None:
    for m in MODS:
        _compile_fake(root, m)
    _write_manifest(root, MODS)
    native._source(root, "streams.core.b").write_text("y = 3\n")
    with pytest.raises(native.StaleNativeBuild, match=r"changed since they were compiled: streams.core.b.*"
                                                      r"hangwatch native build"):
        native.verify_core(root, MODS)
    assert native.inspect_core(root, MODS).stale == ("streams.core.b",)


def test_missing_manifest_or_partial_build_refuses(root: Path) -> None:
    _compile_fake(root, "streams.core.a")
    with pytest.raises(native.StaleNativeBuild, match=r"native-build\.json is missing"):
        native.verify_core(root, MODS)
    _write_manifest(root, MODS)
    with pytest.raises(native.StaleNativeBuild, match=r"only part of the core is compiled; missing: streams.core.b"):
        native.verify_core(root, MODS)


def test_clean_removes_extensions_and_manifest(root: Path) -> None:
    for m in MODS:
        _compile_fake(root, m)
    _write_manifest(root, MODS)
    # clean() removes the real module list's files; point it at the fake ones
    removed = native.clean(root)
    assert (root / native.MANIFEST) in removed
    assert native.inspect_core(root, MODS).mode == "compiled"  # a/b are not in COMPILED, untouched
    for m in MODS:
        for p in native._extensions(root, m):
            p.unlink()
    assert native.inspect_core(root, MODS).mode == "pure"


def test_the_loaded_core_is_current() -> None:
    """Whatever the test command built is what runs: a stale build would have failed the import."""
    state = native.inspect_core()
    assert state.problem is None
    for m in state.compiled:
        assert isinstance(importlib.import_module(m).__loader__, importlib.machinery.ExtensionFileLoader)


# --- compiled == source ---------------------------------------------------------------------

def _load_source(module: str) -> ModuleType:
    """The module from its .py, as a separate module (dataclasses need it in sys.modules)."""
    alias = "pure_" + module.replace(".", "_")
    if alias in sys.modules:
        return sys.modules[alias]
    spec = importlib.util.spec_from_file_location(alias, native._source(native.ROOT, module))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[alias] = mod
    spec.loader.exec_module(mod)
    return mod


def _events() -> list[tuple[int, int, Any]]:
    cfg = SimConfig(seed=11, rate=20.0, count=6000, start_ms=1_790_000_000_000, borrowers=400, refuser_share=0.2,
                    faults=FaultConfig(duplicates=0.03, out_of_order=0.03, malformed=0.005, ooo_window_s=20.0,
                                       grace_s=60.0))
    offsets = [0, 0]
    out = []
    for r in generate(cfg):
        p = zlib.crc32(r.key or b"") % 2
        offsets[p] += 1
        try:
            out.append((p, offsets[p], decode(r.value, r.key, now_ms=1_790_000_000_000 + 10 * 86_400_000)))
        except ContractError:
            continue
    return out


def _run_core(flags: Any, partition_rates: Any, merge_rates: Any, events: list[tuple[int, int, Any]]) -> list[Any]:
    """Every output of the three stages, in order, as plain data."""
    rules = load_rules()
    out: list[Any] = []
    rates = {p: partition_rates.PartitionRates(p, (60, 300, 3600), 60_000) for p in (0, 1)}
    merge = merge_rates.MergeRates(2)
    table: dict[str, bytes] = {}
    now = 1_790_000_000_000 + 10 * 86_400_000
    for i in range(0, len(events), 700):
        batch = events[i:i + 700]
        by_borrower: dict[tuple[int, str], list[tuple[Any, int]]] = defaultdict(list)
        for p, off, co in batch:
            out.append(rates[p].process(co, off))
            by_borrower[(p, co.borrower_id)].append((co, off))
        for p, st in rates.items():
            cells = sorted(st.drain_dirty_cells().items())
            out.append(cells)
            merge_rates.apply_message(merge, merge_rates.encode_partials(p, [(k, list(c)) for k, c in cells]))
            out.append(sorted(st.state_changes(), key=lambda kv: kv[0]))
            wm = st.watermark_change()
            if wm is not None:
                merge_rates.apply_message(merge, merge_rates.encode_watermark(p, st.watermark_ms))
            st.mark_persisted()
        merge.finalize()
        out.append([orjson.dumps(u) for u in merge.drain_updates(now)])
        out.append(sorted(merge.state_changes(), key=lambda kv: kv[0]))
        merge.mark_persisted()
        for (p, borrower), items in by_borrower.items():
            raw = table.get(f"{p}|{borrower}")
            state, emitted = flags.apply_events(flags.BorrowerState.from_bytes(raw) if raw else None, borrower,
                                                items, rules, now_ms=now)
            out.append([orjson.dumps(f) for f in emitted])
            table[f"{p}|{borrower}"] = state.to_bytes()
    out.append(sorted(table.items()))
    return out


def test_loaded_core_equals_its_source() -> None:
    events = _events()
    loaded = _run_core(hangwatch.streams.core.flags, hangwatch.streams.core.partition_rates,
                       hangwatch.streams.core.merge_rates, events)
    source = _run_core(_load_source("hangwatch.streams.core.flags"),
                       _load_source("hangwatch.streams.core.partition_rates"),
                       _load_source("hangwatch.streams.core.merge_rates"), events)
    assert len(loaded) == len(source)
    assert loaded == source
    flags_emitted = sum(len(x) for x in loaded if isinstance(x, list) and x and isinstance(x[0], bytes)
                        and b"flag_id" in x[0])
    assert flags_emitted > 0, "the data must exercise the flag rules"

"""Run the hangwatch worker under a profiler (pyinstrument or cProfile) until SIGTERM.

Same settings and code path as `python -m hangwatch worker` (hangwatch.streams.faust_adapter.FaustWorkerHost + a Faust
Worker); the profile covers the process from just before the worker starts until it stops.
Writes OUT.txt (pyinstrument tree or pstats listing) and OUT.json (top functions by own time,
and time per area: our stages, Faust/mode, aiokafka, orjson/decoding, event loop idle).

    python -m bench.profile_worker --out .local/bench/profile/worker --metrics-port 9300
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

AREAS = (  # first match wins; matched against "<file>:<function>"
    ("event loop idle (select)", ("selectors.py", "select.epoll", "epoll.poll", "_run_once")),
    ("decode + validate (schemas)", ("schemas/call_outcome",)),
    ("rates (streams.core.partition_rates/windows)", ("partition_rates", "core/windows")),
    ("flags (streams.core.flags)", ("core/flags",)),
    ("merge (streams.core.merge_rates/spikes)", ("merge_rates", "spikes")),
    ("hangwatch stage glue (streams/*)", ("/streams/",)),
    ("Faust streams/tables/topics", ("faust/",)),
    ("mode (Faust's service framework)", ("mode/",)),
    ("aiokafka (protocol, record batches, producer)", ("aiokafka/",)),
    ("asyncio machinery", ("asyncio/",)),
    ("prometheus metrics", ("prometheus_client",)),
    ("json/orjson/other builtins", ("<built-in>", "orjson", "json/")),
)


def area_of(where: str) -> str:
    for name, needles in AREAS:
        if any(n in where for n in needles):
            return name
    return "other"


def summarize(rows: list[tuple[str, float]], top: int = 25) -> dict[str, Any]:
    """rows: (file:function, own seconds) -> top functions and seconds per area."""
    by_fn: dict[str, float] = defaultdict(float)
    for where, t in rows:
        by_fn[where] += t
    total = sum(by_fn.values()) or 1.0
    areas: dict[str, float] = defaultdict(float)
    for where, t in by_fn.items():
        areas[area_of(where)] += t
    idle = areas.get("event loop idle (select)", 0.0)
    busy = total - idle
    return {
        "total_s": round(total, 2), "busy_s": round(busy, 2), "idle_s": round(idle, 2),
        "areas": {k: {"s": round(v, 2), "share_of_busy": round(v / busy, 3) if busy and not k.startswith("event")
                      else None} for k, v in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top_own_time": [{"function": k, "s": round(v, 3), "share_of_busy": round(v / busy, 3) if busy else None}
                         for k, v in sorted(by_fn.items(), key=lambda kv: -kv[1]) if area_of(k) !=
                         "event loop idle (select)"][:top],
    }


def _pyinstrument_rows(session: Any) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    root = session.root_frame()
    if root is None:
        return rows
    stack = [root]
    while stack:
        f = stack.pop()
        own = f.total_self_time  # own time, the synthetic [self]/[await] children included
        if own and not f.is_synthetic:
            rows.append((f"{f.file_path or '<built-in>'}:{f.function}", own))
        stack.extend(f.children)
    return rows


def _cprofile_rows(stats: Any) -> list[tuple[str, float]]:
    return [(f"{fn[0]}:{fn[2]}", tt) for fn, (_cc, _nc, tt, _ct, _callers) in stats.stats.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--metrics-port", type=int)
    ap.add_argument("--profiler", choices=("pyinstrument", "cprofile"), default="pyinstrument")
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    import faust

    from hangwatch.platform.settings import Settings
    from hangwatch.streams.changelogs import ensure_changelogs
    from hangwatch.streams.faust_adapter import FaustWorkerHost

    settings = Settings()
    if a.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(a.metrics_port, addr="127.0.0.1")
    ensure_changelogs(settings.kafka, settings.worker.app_id)
    host = FaustWorkerHost(settings)
    worker = faust.Worker(host.app, loglevel="warn", quiet=True, redirect_stdouts=False)
    worker.spinner = None  # as hangwatch.streams.worker.run_worker does
    sys.argv = sys.argv[:1]
    if a.profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof: Any = Profiler(interval=0.005, async_mode="disabled")
    else:
        import cProfile

        prof = cProfile.Profile()
    if a.profiler == "pyinstrument":
        prof.start()
    else:
        prof.enable()
    try:
        worker.execute_from_commandline()
    finally:
        if a.profiler == "pyinstrument":
            session = prof.stop()
            out.with_suffix(".txt").write_text(prof.output_text(unicode=True, show_all=False))
            session.save(str(out.with_suffix(".pyisession")))  # re-render: pyinstrument --load FILE
            rows = _pyinstrument_rows(session)
        else:
            import io
            import pstats

            prof.disable()
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf)
            st.sort_stats("tottime").print_stats(60)
            out.with_suffix(".txt").write_text(buf.getvalue())
            rows = _cprofile_rows(st)
        out.with_suffix(".json").write_text(json.dumps({"profiler": a.profiler, **summarize(rows)}, indent=1))


if __name__ == "__main__":
    main()

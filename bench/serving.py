"""Serving benchmark (issue 14): `make bench-serving` = `python -m bench.serving`.

Loads N call events over D days (default 100 M over 365) into a ClickHouse server with the
project's migrations (bench/serving_data.py: INSERT ... SELECT from numbers(), one day
partition per statement), then what the pipeline would have written: the rollups
(hangwatch.sinks.rollup.rebuild, the sink's own SQL), borrower_calls, the stream's window
cells (last days at every size, older hours from the rollups), flags for ~1 % of the
borrowers, alerts, dead letters and the sink's flush log. Each load step is timed.

Then times, at the server, whatever the code contains at run time:
  query      every query of the catalogue (hangwatch.sinks.catalogue), default parameters
  panel      every target and template variable of every dashboard built by hangwatch.grafana,
             macros expanded as the ClickHouse plugin does (tests/grafana/macro_helper.py),
             $__interval_s as Grafana computes it from the panel's width
  rule       every Grafana alert rule, over its own look-back
  report     the whole report (hangwatch.report.data.collect), and each of its queries
  refresh    all targets of the live dashboard started at once, one connection each, as the
             read-only `grafana` user (as Grafana does on every refresh)
  borrower   one borrower's calls over 365 days from borrower_calls (and from call_events)
  cli        `hangwatch query rates_timeseries --since 90d` as a process, output to a pipe
for each range (1h, 24h, 7d, 30d, 90d): median and max of --runs runs (a run slower than
--slow seconds is not repeated), with rows and bytes read from system.query_log. Once right
after the load ("after load") and once after OPTIMIZE ... FINAL of every partition with more
than one part and the background merges settled ("merged").

Output: a table per phase on stdout (logs on stderr), bench/results/serving-<stamp>.json and
.png, copied to serving-latest.json / .png.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clickhouse_driver import Client
from rich.console import Console
from rich.table import Table

from bench.env import ROOT, MachineCpu
from hangwatch.platform.settings import Settings, load_settings
from hangwatch.sinks.backends.base import Backend, Result
from hangwatch.sinks.sql import ident, literal

log = logging.getLogger("bench.serving")

RANGES: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400, "90d": 90 * 86_400}
TARGETS = {
    "query_90d_s": 1.0,
    "query_24h_s": 0.3,
    "report_24h_s": 5.0,
    "refresh_24h_s": 2.0,
    "refresh_30d_s": 5.0,
    "load_s": 600.0,
    "borrower_s": 0.3,
}
# Grafana's grid: 24 columns over a ~1,900 px wide screen; a panel's maxDataPoints is its width in px.
PX_PER_COLUMN = 78
LIVE = "hangup-risk-live"
EXECUTION_LIMIT_S = 60  # the grafana user's max_execution_time (deploy/local/common.sh)


@dataclasses.dataclass
class Item:
    """One thing timed: a query, panel target, rule, report section, ..."""

    kind: str
    name: str
    sql: str | None  # None: timed by a function (report, refresh, cli)
    range: str  # a key of RANGES, or "own" (its look-back is fixed), or "-" (no range)
    runs: list[float] = dataclasses.field(default_factory=list)
    query_ids: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self, log_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        rows = [log_rows[q] for q in self.query_ids if q in log_rows]
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "range": self.range,
                               "runs_s": [round(r, 4) for r in self.runs], "error": self.error, **self.extra}
        if self.runs:
            out["median_s"] = round(statistics.median(self.runs), 4)
            out["max_s"] = round(max(self.runs), 4)
        if rows:
            for k in ("read_rows", "read_bytes", "result_rows", "memory_usage"):
                out[k] = int(statistics.median(r[k] for r in rows))
            out["server_median_s"] = round(statistics.median(r["query_duration_ms"] for r in rows) / 1000, 4)
        return out


# --- connections ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str = "default"
    password: str = ""

    def client(self, **settings: Any) -> Client:
        return Client(host=self.host, port=self.port, user=self.user, password=self.password, database="default",
                      send_receive_timeout=3600, sync_request_timeout=30, client_name="hangwatch-bench-serving",
                      settings=settings)

    def url(self, db: str | None = None) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"clickhouse://{auth}@{self.host}:{self.port}" + (f"/{db}" if db else "")


def _server_from_url(url: str) -> Server:
    m = re.fullmatch(r"clickhouse://(?:([^:@/]+)(?::([^@/]*))?@)?([^:/]+)(?::(\d+))?/?", url)
    if not m:
        raise ValueError(f"not a clickhouse://user@host:port URL: {url}")
    return Server(m[3], int(m[4] or 9000), m[1] or "default", m[2] or "")


class Timer:
    """Runs SQL with log_queries on and a query id per run; rows and bytes come from query_log."""

    def __init__(self, server: Server, runs: int, slow_s: float) -> None:
        self.server = server
        self.client = server.client(log_queries=1, max_execution_time=EXECUTION_LIMIT_S)
        self.runs = runs
        self.slow_s = slow_s

    def once(self, sql: str, item: Item) -> float:
        qid = f"serving-{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        self.client.execute(sql, query_id=qid)
        dt = time.perf_counter() - t0
        item.query_ids.append(qid)
        return dt

    def time(self, item: Item) -> None:
        assert item.sql is not None
        for _ in range(self.runs):
            try:
                dt = self.once(item.sql, item)
            except Exception as e:  # a failing query is a result too
                item.error = _one_line(e)
                return
            item.runs.append(dt)
            if dt > self.slow_s:
                break

    def log_rows(self, query_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not query_ids:
            return {}
        self.client.execute("SYSTEM FLUSH LOGS")
        out: dict[str, dict[str, Any]] = {}
        ids = list(query_ids)
        for i in range(0, len(ids), 500):
            rows = self.client.execute(
                "SELECT query_id, query_duration_ms, read_rows, read_bytes, result_rows, memory_usage "
                "FROM system.query_log WHERE type = 2 AND event_date >= yesterday() "
                f"AND query_id IN {literal(ids[i:i + 500])}")
            for qid, ms, rr, rb, res, mem in rows:
                out[qid] = {"query_duration_ms": ms, "read_rows": rr, "read_bytes": rb, "result_rows": res,
                            "memory_usage": mem}
        return out


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


class DriverBackend:
    """hangwatch's Backend interface over a bench connection (log_queries on, query ids kept),
    so the report's own code runs unchanged while every statement it sends is timed."""

    name = "native"

    def __init__(self, client: Client, server_tz: str = "UTC") -> None:
        self.client = client
        self.calls: list[tuple[str, float, str]] = []  # (sql, seconds, query id)
        from zoneinfo import ZoneInfo

        self._tz = ZoneInfo(server_tz)

    def execute(self, sql: str) -> None:
        self.client.execute(sql)

    def query(self, sql: str) -> Result:
        qid = f"serving-{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        rows, types = self.client.execute(sql, with_column_types=True, query_id=qid)
        self.calls.append((sql, time.perf_counter() - t0, qid))
        conv = [t.startswith(("DateTime", "Nullable(DateTime")) for _, t in types]
        fixed = [tuple(v.replace(tzinfo=self._tz) if c and isinstance(v, datetime) and v.tzinfo is None else v
                       for c, v in zip(conv, r, strict=True)) for r in rows]
        return Result([n for n, _ in types], [t for _, t in types], fixed)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError("the serving bench only reads")

    def server_version(self) -> Any:
        from hangwatch.sinks.backends.base import ServerVersion

        return ServerVersion.parse(str(self.client.execute("SELECT version()")[0][0]))

    def close(self) -> None:
        self.client.disconnect()


# --- what to time -----------------------------------------------------------------------------

def bench_settings(db: str) -> Settings:
    """The project's settings with the benchmark's database and English names (labels)."""
    s = load_settings()
    return s.model_copy(update={"clickhouse": s.clickhouse.model_copy(update={"database": db}), "language": "en"})


def catalogue_items(settings: Settings, db: str, end: datetime, ranges: Sequence[str],
                    borrower: str) -> list[Item]:
    from hangwatch.sinks import catalogue
    from hangwatch.sinks.catalogue import Context, FixedFrame, step_for

    items = []
    for name, q in sorted(catalogue.catalogue().items()):
        params: dict[str, Any] = {p.name: borrower for p in q.params if "borrower" in p.name}
        frames: list[tuple[str, Any]]
        if q.time == "range":
            frames = [(r, FixedFrame(end - timedelta(seconds=RANGES[r]), end,
                                     step_for(end - timedelta(seconds=RANGES[r]), end))) for r in ranges]
        else:
            frames = [("-", FixedFrame(None, end))]
        for r, frame in frames:
            ctx = Context.of(settings, frame, db)
            try:
                sql = catalogue.render(name, ctx, **params)
                items.append(Item("query", name, sql, r))
            except Exception as e:
                items.append(Item("query", name, None, r, error=_one_line(e)))
    return items


def grafana_interval_s(range_s: int, width_columns: int, min_interval_s: int = 1) -> int:
    """$__interval as Grafana computes it: range / maxDataPoints (the panel's width in px),
    rounded to a 'nice' interval (kbn.roundInterval), at least the minimum."""
    raw_ms = range_s * 1000 / max(width_columns * PX_PER_COLUMN, 1)
    nice_ms = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
               (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
               (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
               (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
               (30600000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
               (3628800000, 2592000000)]
    ms = next((v for limit, v in nice_ms if raw_ms < limit), 31536000000)
    return max(ms // 1000, min_interval_s, 1)


def _interval_of(text: str | None) -> int:
    if not text:
        return 1
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]] if m else 1


def panel_items(settings: Settings, end: datetime, ranges: Sequence[str]) -> list[Item]:
    from hangwatch.grafana import dashboards
    from tests.grafana import macro_helper

    items = []
    t = int(end.timestamp())
    for dash, d in dashboards.all_dashboards(settings).items():
        for r in ranges:
            f = t - RANGES[r]
            for p in d["panels"]:
                width = int((p.get("gridPos") or {}).get("w") or 12)
                interval = grafana_interval_s(RANGES[r], width, _interval_of(p.get("interval")))
                for target in p.get("targets", []):
                    sql = macro_helper.expand(target["rawSql"], f, t, interval)
                    items.append(Item("panel", f"{dash}: {p['title']} [{target['refId']}]", sql, r,
                                      extra={"dashboard": dash, "interval_s": interval}))
            for v in d["templating"]["list"]:
                if v.get("query"):
                    sql = macro_helper.expand(v["query"], f, t, grafana_interval_s(RANGES[r], 24))
                    items.append(Item("panel", f"{dash}: variable {v['name']}", sql, r,
                                      extra={"dashboard": dash, "variable": True}))
    return items


def rule_items(settings: Settings, end: datetime) -> list[Item]:
    from hangwatch.grafana import alerts
    from tests.grafana import macro_helper

    t = int(end.timestamp())
    return [Item("rule", r.title, macro_helper.expand(r.sql, t - r.range_s, t, alerts.INTERVAL_MS // 1000), "own",
                 extra={"uid": r.uid, "lookback_s": r.range_s}) for r in alerts.rules(settings)]


# --- the runs ---------------------------------------------------------------------------------

def time_items(timer: Timer, items: list[Item], what: str) -> None:
    t0 = time.perf_counter()
    for i, it in enumerate(items, 1):
        if it.sql is not None and it.error is None:
            timer.time(it)
        if i % 20 == 0 or i == len(items):
            log.info("%s: %d/%d timed (%.0f s)", what, i, len(items), time.perf_counter() - t0)


def time_report(server: Server, settings: Settings, db: str, end: datetime, ranges: Sequence[str], runs: int,
                slow_s: float) -> tuple[list[Item], list[Item]]:
    """The whole report per range (hangwatch.report.data.collect), and per query it sent."""
    from hangwatch.report.data import collect

    whole: list[Item] = []
    sections: list[Item] = []
    for r in ranges:
        it = Item("report", "report (data.collect, all sections)", None, r)
        per_sql: dict[str, Item] = {}
        for _ in range(runs):
            backend = DriverBackend(server.client(log_queries=1, max_execution_time=EXECUTION_LIMIT_S))
            t0 = time.perf_counter()
            try:
                collect(_as_backend(backend), settings, db, end - timedelta(seconds=RANGES[r]), end)
            except Exception as e:
                it.error = _one_line(e)
                break
            finally:
                backend.close()
            dt = time.perf_counter() - t0
            it.runs.append(dt)
            for n, (sql, sec, qid) in enumerate(backend.calls):
                key = f"{n:02d} {_section_name(sql)}"
                s = per_sql.setdefault(key, Item("report section", key, None, r))
                s.runs.append(sec)
                s.query_ids.append(qid)
                it.query_ids.append(qid)
            if dt > slow_s:
                break
        whole.append(it)
        sections.extend(per_sql.values())
    return whole, sections


def _as_backend(b: DriverBackend) -> Backend:
    return b  # type: ignore[return-value]  # structural: the Backend protocol's methods


def _section_name(sql: str) -> str:
    """Which catalogue query a statement came from: its FROM tables and first columns."""
    tables = sorted(set(re.findall(r"\bFROM\s+\w+\.(\w+)", sql)))
    cols = re.sub(r"\s+", " ", sql.strip())[7:60]
    return f"{'+'.join(tables)}: {cols}"


def time_refresh(grafana: Server, items: list[Item], ranges: Sequence[str], runs: int) -> list[Item]:
    """All live-dashboard targets of a range started at once, one connection each."""
    out = []
    for r in ranges:
        targets = [it for it in items if it.kind == "panel" and it.range == r and it.extra.get("dashboard") == LIVE
                   and not it.extra.get("variable") and it.sql]
        res = Item("refresh", f"all {len(targets)} live-dashboard targets at once (user {grafana.user})", None, r)
        clients = [grafana.client(log_queries=1, max_execution_time=EXECUTION_LIMIT_S) for _ in targets]
        for c in clients:
            c.execute("SELECT 1")  # Grafana keeps its connections open
        slowest: dict[str, float] = {}
        errors: list[str] = []
        for _ in range(runs):
            wall, results = _refresh_once(clients, targets, res)
            res.runs.append(wall)
            for name, dt, err in results:
                slowest[name] = max(slowest.get(name, 0.0), dt)
                if err:
                    errors.append(f"{name}: {err}")
        for c in clients:
            c.disconnect()
        res.extra["slowest_targets"] = sorted(((round(v, 3), k) for k, v in slowest.items()), reverse=True)[:5]
        if errors:
            res.error = f"{len(errors)} failed target runs; first: {errors[0]}"
        out.append(res)
        log.info("refresh %s: %s s", r, [round(x, 2) for x in res.runs])
    return out


def _refresh_once(clients: Sequence[Client], targets: Sequence[Item],
                  res: Item) -> tuple[float, list[tuple[str, float, str | None]]]:
    """Every target on its own connection, released together; the wall time until the last
    one answered, and each target's own time and error."""
    start = threading.Barrier(len(targets) + 1)

    def one(i: int) -> tuple[str, float, str | None]:
        qid = f"serving-{uuid.uuid4().hex}"
        start.wait()
        t0 = time.perf_counter()
        err = None
        try:
            clients[i].execute(targets[i].sql or "", query_id=qid)
        except Exception as e:
            err = _one_line(e)
        res.query_ids.append(qid)
        return targets[i].name, time.perf_counter() - t0, err

    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [pool.submit(one, i) for i in range(len(targets))]
        start.wait()
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        return time.perf_counter() - t0, results


def borrower_items(settings: Settings, db: str, borrower: str, end: datetime) -> list[Item]:
    """The drill-down as the catalogue runs it (`borrower_calls`, 365 days), and the same rows
    from call_events FINAL for contrast."""
    from hangwatch.sinks import catalogue
    from hangwatch.sinks.catalogue import Context, FixedFrame

    lo = end - timedelta(days=365)
    drill_down = catalogue.render("borrower_calls", Context.of(settings, FixedFrame(lo, end), db), borrower=borrower)
    cols = ("occurred_at, event_id, call_id, loan_id, campaign, channel, agent_id, branch, outcome, hangup_stage, "
            "duration_s, attempt_no, pre_notified, credit_grade, script_version")
    where = f"borrower_id = {literal(borrower)} AND occurred_at >= {literal(lo)} AND occurred_at <= {literal(end)}"
    return [
        Item("borrower", "one borrower's calls, 365 d (borrower_calls)", drill_down, "-"),
        Item("borrower", "the same from call_events FINAL (for contrast)",
             f"SELECT {cols} FROM {db}.call_events FINAL WHERE {where} ORDER BY occurred_at", "-"),
    ]


def time_cli(server: Server, db: str, timeout_s: float) -> list[Item]:
    """`hangwatch query rates_timeseries --since 90d`, printing to a pipe (table and CSV)."""
    out = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGWATCH_")}
    env.update({"HANGWATCH_CLICKHOUSE__URL": server.url(db), "HANGWATCH_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT)})
    exe = str(Path(sys.executable).with_name("hangwatch"))
    for label, extra in (("table", []), ("csv", ["--format", "csv"])):
        it = Item("cli", f"hangwatch query rates_timeseries --since 90d ({label})", None, "90d")
        t0 = time.perf_counter()
        try:
            p = subprocess.run([exe, "query", "rates_timeseries", "--since", "90d", *extra], env=env, cwd=ROOT,
                               capture_output=True, timeout=timeout_s)
            it.runs.append(time.perf_counter() - t0)
            it.extra["stdout_bytes"] = len(p.stdout)
            it.extra["stdout_lines"] = p.stdout.count(b"\n")
            if p.returncode != 0:
                it.error = f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}"
        except subprocess.TimeoutExpired:
            it.error = f"did not finish in {timeout_s:.0f} s"
        out.append(it)
        log.info("%s: %s s", it.name, [round(x, 1) for x in it.runs])
    return out


# --- merges -----------------------------------------------------------------------------------

def merge_all(client: Client, db: str) -> dict[str, Any]:
    """OPTIMIZE ... FINAL every partition that has more than one active part, then wait until
    no merge runs; returns the time and what was merged."""
    t0 = time.perf_counter()
    rows = client.execute(
        f"SELECT table, partition_id, count() FROM system.parts WHERE database = {literal(db)} AND active "
        "GROUP BY table, partition_id HAVING count() > 1 ORDER BY table, partition_id")
    for table, pid, _ in rows:
        client.execute(f"OPTIMIZE TABLE {ident(db)}.{ident(table)} PARTITION ID {literal(pid)} FINAL",
                       settings={"max_execution_time": 0})
    while client.execute(f"SELECT count() FROM system.merges WHERE database = {literal(db)}")[0][0]:
        time.sleep(1)
    return {"seconds": round(time.perf_counter() - t0, 1), "partitions_merged": len(rows),
            "parts": part_counts(client, db)}


def part_counts(client: Client, db: str) -> dict[str, dict[str, int]]:
    rows = client.execute(
        f"SELECT table, count(), uniqExact(partition_id), sum(rows), sum(bytes_on_disk) FROM system.parts "
        f"WHERE database = {literal(db)} AND active GROUP BY table ORDER BY table")
    return {t: {"parts": int(n), "partitions": int(p), "rows": int(r), "bytes": int(b)} for t, n, p, r, b in rows}


# --- report -----------------------------------------------------------------------------------

def _fmt_cell(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return ""
    if rec.get("error") and not rec.get("runs_s"):
        return "ERROR"
    if "median_s" not in rec:
        return "-"
    return f"{rec['median_s']:.3f} ({rec['max_s']:.2f})" + ("!" if rec.get("error") else "")


def print_phase(console: Console, phase: str, records: list[dict[str, Any]], ranges: Sequence[str]) -> None:
    cols = [*ranges, "-", "own"]
    used = [c for c in cols if any(r["range"] == c for r in records)]
    t = Table(title=f"serving, {phase}: median (max) seconds of the runs; '!' = failed in a run",
              show_lines=False)
    t.add_column("kind")
    t.add_column("name", overflow="fold", max_width=70)
    for c in used:
        t.add_column(c, justify="right")
    t.add_column("rows read (widest)", justify="right")
    seen: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        seen.setdefault((r["kind"], r["name"]), {})[r["range"]] = r
    for (kind, name), by_range in seen.items():
        rows_read = max((x.get("read_rows") or 0 for x in by_range.values()), default=0)
        t.add_row(kind, name, *[_fmt_cell(by_range.get(c)) for c in used], f"{rows_read:,}")
    console.print(t)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against the figures of each phase."""
    out: dict[str, Any] = {"load_s": result["load"]["steps"].get("call_events"), "phases": {}}
    for phase, recs in result["phases"].items():
        timed = [r for r in recs if r["kind"] in ("query", "panel", "rule")]
        out["phases"][phase] = {
            "query_90d": _worst(timed, ("90d",)), "query_24h": _worst(timed, ("24h",)),
            "no_range_or_own": _worst(timed, ("-", "own")),
            "report_24h_s": _median_of(recs, "report", "24h"), "refresh_24h_s": _median_of(recs, "refresh", "24h"),
            "refresh_30d_s": _median_of(recs, "refresh", "30d"),
            "borrower_s": next((r.get("median_s") for r in recs if r["kind"] == "borrower"), None),
        }
    return out


def _worst(recs: Sequence[dict[str, Any]], ranges: Sequence[str]) -> dict[str, Any]:
    xs = sorted((r for r in recs if r["range"] in ranges and "median_s" in r), key=lambda r: -r["median_s"])
    return {"max_median_s": xs[0]["median_s"] if xs else None,
            "errors": [(r["kind"], r["name"], r["range"], r["error"]) for r in recs
                       if r["range"] in ranges and r.get("error")],
            "slowest": [(r["median_s"], r["kind"], r["name"], r.get("read_rows")) for r in xs[:10]]}


def _median_of(recs: Sequence[dict[str, Any]], kind: str, rng: str) -> float | None:
    return next((r.get("median_s") for r in recs if r["kind"] == kind and r["range"] == rng), None)


def print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(title="targets (issue 14)")
    t.add_column("target")
    t.add_column("value", justify="right")
    phases = list(s["phases"])
    for p in phases:
        t.add_column(p, justify="right")

    def ok(v: float | None, limit: float) -> str:
        return "-" if v is None else f"{v:.3f} {'ok' if v <= limit else 'MISSED'}"

    rows = [
        ("every panel and query, 90 days (slowest median)", TARGETS["query_90d_s"],
         [s["phases"][p]["query_90d"]["max_median_s"] for p in phases]),
        ("every panel and query, 24 h (slowest median)", TARGETS["query_24h_s"],
         [s["phases"][p]["query_24h"]["max_median_s"] for p in phases]),
        ("the report, 24 h", TARGETS["report_24h_s"], [s["phases"][p]["report_24h_s"] for p in phases]),
        ("all live targets at once, 24 h", TARGETS["refresh_24h_s"], [s["phases"][p]["refresh_24h_s"] for p in phases]),
        ("all live targets at once, 30 d", TARGETS["refresh_30d_s"], [s["phases"][p]["refresh_30d_s"] for p in phases]),
        ("one borrower's calls, 365 d", TARGETS["borrower_s"], [s["phases"][p]["borrower_s"] for p in phases]),
    ]
    for name, limit, vals in rows:
        t.add_row(name, f"<= {limit}", *[ok(v, limit) for v in vals])
    t.add_row("loading the events (call_events step)", f"<= {TARGETS['load_s']:.0f}",
              *([ok(s["load_s"], TARGETS["load_s"])] + [""] * (len(phases) - 1)))
    console.print(t)
    for p in phases:
        for key in ("query_90d", "query_24h", "no_range_or_own"):
            sl = s["phases"][p][key]["slowest"][:5]
            if sl:
                console.print(f"slowest, {p}, {key}: " + "; ".join(
                    f"{m:.2f} s {k} {n} ({(rr or 0):,} rows)" for m, k, n, rr in sl))


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hangwatch.report.fonts import use_cjk_font

    with contextlib.suppress(Exception):  # panel titles may be Chinese; without the font they show as boxes
        use_cjk_font()
    phases = list(result["phases"])
    fig, axes = plt.subplots(1, len(phases) + 1, figsize=(8 * len(phases) + 6, 12),
                             gridspec_kw={"width_ratios": [3] * len(phases) + [1.4]})
    for ax, phase in zip(axes, phases, strict=False):
        recs = [r for r in result["phases"][phase] if r["kind"] in ("query", "panel") and "median_s" in r]
        names = sorted({f"{r['kind']}: {r['name']}"[:70] for r in recs if r["range"] in ("24h", "90d")})
        by = {(f"{r['kind']}: {r['name']}"[:70], r["range"]): r["median_s"] for r in recs}
        y = range(len(names))
        for off, rng, color in ((-0.2, "24h", "tab:blue"), (0.2, "90d", "tab:orange")):
            ax.barh([i + off for i in y], [by.get((n, rng), 0) for n in names], 0.4, label=rng, color=color)
        ax.axvline(TARGETS["query_24h_s"], color="tab:blue", ls="--", lw=1)
        ax.axvline(TARGETS["query_90d_s"], color="tab:orange", ls="--", lw=1)
        ax.set_yticks(list(y), names, fontsize=6)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("median seconds (log); dashed: targets 0.3 s (24 h), 1 s (90 d)")
        ax.set_title(f"queries and panel targets, {phase}")
        ax.legend(loc="lower right")
    ax = axes[-1]
    labels, vals = [], []
    for phase in phases:
        for r in result["phases"][phase]:
            if r["kind"] in ("refresh", "report", "borrower") and "median_s" in r and r["range"] in ("24h", "30d", "-"):
                labels.append(f"{phase}: {r['kind']} {r['range']}"[:40])
                vals.append(r["median_s"])
    ax.barh(labels, vals, color="tab:green")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("refresh (all live targets), report, borrower")
    sh = result["shape"]
    fig.suptitle(f"hangwatch serving bench {result['started']}: {sh['events']:,} events over {sh['days']} days, "
                 f"ClickHouse {result.get('server_version')}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------

@contextmanager
def _phase_timer(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("== %s", name)
    yield
    log.info("== %s done in %.0f s", name, time.perf_counter() - t0)


def run_phase(server: Server, grafana: Server, settings: Settings, db: str, end: datetime, ranges: Sequence[str],
              a: argparse.Namespace, borrower: str) -> list[dict[str, Any]]:
    timer = Timer(server, a.runs, a.slow)
    items = catalogue_items(settings, db, end, ranges, borrower)
    items += panel_items(settings, end, ranges)
    items += rule_items(settings, end)
    items += borrower_items(settings, db, borrower, end)
    time_items(timer, items, "queries, panels, rules")
    reports, sections = time_report(server, settings, db, end, ranges, a.runs, a.slow)
    refresh = time_refresh(grafana, items, [r for r in ranges if r in a.refresh_ranges.split(",")], a.runs)
    everything = items + reports + sections + refresh
    rows = timer.log_rows([q for it in everything for q in it.query_ids])
    return [it.record(rows) for it in everything]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--borrowers", type=int, default=None,
                    help="distinct borrowers (default 10,000,000, at most events/10)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slow", type=float, default=10.0, help="a run slower than this is not repeated (s)")
    ap.add_argument("--ranges", default=",".join(RANGES))
    ap.add_argument("--refresh-ranges", default="1h,24h,7d,30d", help="ranges of the concurrent refresh")
    ap.add_argument("--phases", default="after_load,merged")
    ap.add_argument("--events-only", action="store_true",
                    help="load call_events alone, time it and stop (the 'loading 100 M events' target; "
                         "use a --db of its own: the data set is not complete)")
    ap.add_argument("--connections", type=int, default=2, help="concurrent INSERTs while loading")
    ap.add_argument("--db", default="hangwatch_serving")
    ap.add_argument("--reuse", action="store_true", help="keep the database if it holds the same shape")
    ap.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    ap.add_argument("--minute-days", type=int, default=35,
                    help="days of rollup_1m built (its retention); older days get hours and days only")
    ap.add_argument("--rollup-days", type=int, default=None,
                    help="build the rollups for the local days of the last so many days only (default: all)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the database's call_events if it holds --events rows (a load cut short) and "
                         "load the rest")
    ap.add_argument("--events-took", type=float, default=None,
                    help="with --resume: the seconds the cut-short load took for call_events (recorded as its step)")
    ap.add_argument("--hourly-cells", action="store_true",
                    help="also 3600 s window cells of every dimension over the whole period (from rollup_1h)")
    ap.add_argument("--cli-timeout", type=float, default=600.0)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--ch-url", default=os.environ.get(
        "HANGWATCH_BENCH_CLICKHOUSE_URL", f"clickhouse://default@127.0.0.1:{os.environ.get('CH_TCP_PORT', '9000')}"))
    ap.add_argument("--grafana-user", default="grafana")
    ap.add_argument("--grafana-password", default=os.environ.get("HANGWATCH_GRAFANA_CH_PASSWORD", "grafana"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--label", default="", help="recorded in the JSON (e.g. 'before: catalogue of 76c4b55')")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="print the tables, targets and chart of a saved run (e.g. one cut short) without running")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("clickhouse_driver", "hangwatch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ranges = [r for r in a.ranges.split(",") if r]
    bad = set(ranges) - set(RANGES)
    if bad:
        ap.error(f"unknown ranges {sorted(bad)}; known: {', '.join(RANGES)}")
    borrowers = a.borrowers or max(1000, min(10_000_000, a.events // 10))
    server = _server_from_url(a.ch_url)
    grafana = dataclasses.replace(server, user=a.grafana_user, password=a.grafana_password)
    if not a.from_json:
        try:
            grafana.client().execute("SELECT 1")
        except Exception as e:
            log.warning("no read-only user %r (%s); the refresh runs as %s", a.grafana_user, _one_line(e),
                        server.user)
            grafana = server
    a.out.mkdir(parents=True, exist_ok=True)
    if a.from_json:
        result = json.loads(a.from_json.read_text())
        ranges = [r for r in RANGES if any(x["range"] == r for recs in result["phases"].values() for x in recs)]
    else:
        result = run(a, server, grafana, ranges, borrowers)
        if a.events_only:
            return 0
    console = Console(file=sys.stdout, width=200)
    for phase, recs in result["phases"].items():
        print_phase(console, phase, recs, ranges)
    result["summary"] = summarize(result)
    print_summary(console, result["summary"])
    for it in result.get("cli", []):
        console.print(f"cli: {it['name']}: {it.get('median_s', '-')} s, {it.get('stdout_lines', '-')} lines"
                      + (f" ERROR {it['error']}" if it.get("error") else ""))
    js = _save(result, a.out)
    shutil.copyfile(js, a.out / "serving-latest.json")
    png = js.with_suffix(".png")
    write_chart(result, png)
    shutil.copyfile(png, a.out / "serving-latest.png")
    console.print(f"results: {js.relative_to(ROOT) if js.is_relative_to(ROOT) else js}, {png.name}")
    return 0


def run(a: argparse.Namespace, server: Server, grafana: Server, ranges: Sequence[str],
        borrowers: int) -> dict[str, Any]:
    from bench import serving_data as sd
    from bench.__main__ import _code_state, _host
    from hangwatch.sinks import migrate, retention
    from hangwatch.sinks.backends.native import NativeBackend
    from hangwatch.sinks.backends.url import parse_url

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    admin = server.client()
    db = ident(a.db)
    settings = bench_settings(db)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    shape_key = f"{a.events}/{a.days}/{borrowers}"
    result: dict[str, Any] = {"started": stamp, "label": a.label, "host": _host(), "code": _code_state(),
                              "server_version": admin.execute("SELECT version()")[0][0], "db": db,
                              "shape": {"events": a.events, "days": a.days, "borrowers": borrowers}, "phases": {}}
    reused = False
    if a.reuse:
        marker = _read_marker(admin, db)
        if marker and marker.get("shape") == shape_key:
            end = datetime.fromtimestamp(marker["end"], tz=UTC)
            result["load"] = marker["load"]
            reused = True
            log.info("reusing %s (%s, loaded for end %s)", db, shape_key, end.isoformat())
    events_loaded = False
    if not reused and a.resume:
        have = admin.execute(f"SELECT count() FROM system.tables WHERE database = {literal(db)} "
                             "AND name = 'call_events'")[0][0]
        events_loaded = bool(have) and admin.execute(f"SELECT count() FROM {db}.call_events")[0][0] == a.events
        if events_loaded:
            end = datetime.fromtimestamp(admin.execute(f"SELECT toUInt32(max(occurred_at)) + 60 - "
                                                       f"toUInt32(max(occurred_at)) % 60 FROM {db}.call_events")
                                         [0][0], tz=UTC)
            log.info("resuming %s: call_events holds %d events up to %s", db, a.events, end.isoformat())
    if not reused:
        if not events_loaded:
            admin.execute(f"DROP DATABASE IF EXISTS {db}")
        backends = [NativeBackend(parse_url(server.url()), send_receive_timeout_s=3600)
                    for _ in range(max(a.connections, 1))]
        migrate.apply(backends[0], db, settings.clickhouse.retention_days)
        shape = sd.Shape(a.events, a.days, end, borrowers, settings.timezone)
        cpu = MachineCpu()
        t0 = time.perf_counter()
        with _phase_timer(f"load {a.events:,} events over {a.days} days into {db}"):
            times = sd.load(backends, db, shape, minute_days=a.minute_days, hourly_cells=a.hourly_cells,
                            rollup_days=a.rollup_days, events_loaded=events_loaded, events_only=a.events_only)
            drops, _ = retention.apply(backends[0], db, settings.clickhouse.retention_days,
                                       today=end.date())
        if events_loaded and a.events_took is not None:
            times.steps["call_events"] = a.events_took
        result["load"] = {"steps": times.steps, "rows": times.rows, "detail": times.detail,
                          "resumed": events_loaded, "rollup_days": a.rollup_days, "minute_days": a.minute_days,
                          "total_s": round(time.perf_counter() - t0, 1),
                          "retention_dropped_partitions": len(drops), "machine": cpu.since_start()}
        for b in backends:
            b.close()
        if a.events_only:  # not a complete data set: no marker, no timing phases
            _save(result, a.out)
            print(f"call_events: {times.rows['call_events']:,} events over {a.days} days loaded in "
                  f"{times.steps['call_events']:.0f} s (target {TARGETS['load_s']:.0f} s); machine {cpu.since_start()}")
            return result
        _write_marker(admin, db, {"shape": shape_key, "end": int(end.timestamp()), "load": result["load"]})
        _save(result, a.out)
    if reused:
        _upgrade(a, server, db, settings, end, result)
    result["end"] = end.isoformat()
    borrower = _sample_borrower(admin, db)
    result["borrower"] = borrower
    result["parts_after_load"] = part_counts(admin, db)
    for phase in [p for p in a.phases.split(",") if p]:
        if phase == "merged":
            with _phase_timer("merge"):
                result["merge"] = merge_all(admin, db)
        cpu = MachineCpu()
        with _phase_timer(f"timing, {phase}"):
            result["phases"][phase] = run_phase(server, grafana, settings, db, end, ranges, a, borrower)
        result.setdefault("machine", {})[phase] = cpu.since_start() | {"load_avg": os.getloadavg()}
        _save(result, a.out)
    if not a.skip_cli:
        result["cli"] = [it.record(Timer(server, 1, 0).log_rows([])) for it in time_cli(server, db, a.cli_timeout)]
    if not a.keep:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
    admin.disconnect()
    return result


def _upgrade(a: argparse.Namespace, server: Server, db: str, settings: Settings, end: datetime,
             result: dict[str, Any]) -> None:
    """A reused data set gets the migrations added since it was loaded, and the compact rollups
    (0016) of the days the rollups were built for (as the upgrade's `hangwatch rollups` would),
    timed as a load step."""
    from bench import serving_data as sd
    from hangwatch.sinks import migrate
    from hangwatch.sinks.backends.native import NativeBackend
    from hangwatch.sinks.backends.url import parse_url

    backends = [NativeBackend(parse_url(server.url()), send_receive_timeout_s=3600)
                for _ in range(max(a.connections, 1))]
    try:
        applied = migrate.apply(backends[0], db, settings.clickhouse.retention_days)
        if any(m.version == 16 for m in applied):
            first = backends[0].query(f"SELECT toUInt32(min(bucket_start)) FROM {db}.rollup_1h").scalar()
            took = sd.build_compact(backends, db, settings.timezone, datetime.fromtimestamp(int(first), tz=UTC), end)
            result["load"].setdefault("steps", {})["compact_rollups"] = took
    finally:
        for b in backends:
            b.close()


def _save(result: dict[str, Any], out: Path) -> Path:
    """The JSON so far (written after each step, so a run cut short still leaves its figures)."""
    js = out / f"serving-{result['started']}.json"
    js.write_text(json.dumps(result, indent=1, default=str))
    return js


_MARKER = "bench_serving_marker"


def _write_marker(client: Client, db: str, data: dict[str, Any]) -> None:
    client.execute(f"CREATE TABLE IF NOT EXISTS {db}.{_MARKER} (data String) ENGINE = TinyLog")
    client.execute(f"INSERT INTO {db}.{_MARKER} VALUES", [(json.dumps(data),)])


def _read_marker(client: Client, db: str) -> dict[str, Any] | None:
    exists = client.execute(f"SELECT count() FROM system.tables WHERE database = {literal(db)} "
                            f"AND name = {literal(_MARKER)}")[0][0]
    if not exists:
        return None
    rows = client.execute(f"SELECT data FROM {db}.{_MARKER}")
    return json.loads(rows[-1][0]) if rows else None


def _sample_borrower(client: Client, db: str) -> str:
    """A borrower with calls (the one with most calls among a few thousand)."""
    rows = client.execute(f"SELECT borrower_id, count() AS n FROM {db}.borrower_calls "
                          f"WHERE borrower_id < 'b-0001000' GROUP BY borrower_id ORDER BY n DESC, borrower_id LIMIT 1")
    return str(rows[0][0]) if rows else "b-0000001"


if __name__ == "__main__":
    sys.exit(main())

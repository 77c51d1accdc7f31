"""Every panel's, variable's and alert rule's SQL, macro-expanded per docs/dashboards.md ("Macros") and run on
ClickHouse (chdb) over the fixture tables; key numbers checked against plain Python."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter, defaultdict
from typing import Any

import pytest
import yaml

from hangwatch.grafana import dashboards, files
from hangwatch.platform.settings import load_settings
from hangwatch.sinks.backends.base import Backend, Result
from tests.grafana import macro_helper
from tests.grafana.pipeline_fixture import END, SPIKE_BRANCH, START, Fixture

F, T = int(START.timestamp()), int(END.timestamp())
INTERVAL = 300
CONNECTED = {"completed", "hung_up", "refused", "wrong_party"}
TIME_TYPES = ("DateTime",)
NUMERIC = re.compile(r"^(Nullable\()?(U?Int|Float|Decimal)")


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((files.DEPLOY_DIR / "dashboards").glob("*.json"))}


def _targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(f"{name}:{p['title']}:{t['refId']}", p, t)
            for name, d in _dashboards().items() for p in d["panels"] for t in p["targets"]]


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((files.DEPLOY_DIR / "provisioning/alerting/rules.yml").read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def run(backend: Backend, fx: Fixture, sql: str, f: int = F, t: int = T, interval: int = INTERVAL,
        variables: dict[str, list[str]] | None = None) -> Result:
    text = macro_helper.expand(sql, f, t, interval, variables)
    assert not macro_helper.unexpanded(text), text
    return backend.query(re.sub(r"\bhangwatch(_dash)?\.(?=\w)", rf"{fx.db}\1.", text))


def _numeric(r: Result) -> list[str]:
    return [c for c, ty in zip(r.columns, r.types, strict=True) if NUMERIC.match(ty)]


def _check_shape(panel: dict[str, Any], r: Result) -> None:
    kind = panel["type"]
    if kind == "timeseries":
        assert r.columns[0] == "time" and r.types[0].startswith(TIME_TYPES), (r.columns, r.types)
        assert _numeric(r), "a time series needs a numeric column"
        assert [row[0] for row in r.rows] == sorted(row[0] for row in r.rows), "time must be ascending"
    elif kind == "stat":
        field = panel["options"]["reduceOptions"]["fields"].strip("/^$")
        assert field in _numeric(r), (field, r.columns, r.types)
        assert len(r.rows) == 1
    elif kind == "barchart":
        x = panel["options"]["xField"]
        assert x in r.columns and _numeric(r)
    else:
        assert r.columns


@pytest.mark.parametrize(("label", "panel", "target"), _targets(), ids=[x[0] for x in _targets()])
def test_panel_sql_runs_with_all(label: str, panel: dict[str, Any], target: dict[str, Any],
                                 backend: Backend, fixture_db: Fixture) -> None:
    r = run(backend, fixture_db, target["rawSql"])
    _check_shape(panel, r)
    if "freshness" not in label.lower():
        assert r.rows, f"{label}: no rows over the fixture"


@pytest.mark.parametrize(("label", "panel", "target"), _targets(), ids=[x[0] for x in _targets()])
def test_panel_sql_runs_with_selected_values(label: str, panel: dict[str, Any], target: dict[str, Any],
                                             backend: Backend, fixture_db: Fixture) -> None:
    variables = {"branch": [SPIKE_BRANCH, "beijing-haidian"], "channel": ["human"], "campaign": [],
                 "script_version": []}
    _check_shape(panel, run(backend, fixture_db, target["rawSql"], variables=variables))


def test_variable_queries(backend: Backend, fixture_db: Fixture) -> None:
    for v in _dashboards()["hangup-risk-live"]["templating"]["list"]:
        r = run(backend, fixture_db, v["query"])
        values = [row[0] for row in r.rows]
        expected = sorted({str(getattr(e, v["name"])) for e in fixture_db.events if getattr(e, v["name"]) is not None})
        assert values == expected, v["name"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["uid"])
def test_alert_rule_sql(rule: dict[str, Any], backend: Backend, fixture_db: Fixture) -> None:
    q = next(d for d in rule["data"] if d["refId"] == "A")
    rng = q["relativeTimeRange"]
    r = run(backend, fixture_db, q["model"]["rawSql"], f=T - rng["from"], t=T - rng["to"],
            interval=q["model"]["intervalMs"] // 1000)
    assert len(_numeric(r)) == 1, "one numeric value per row (alert instance)"
    strings = [c for c, ty in zip(r.columns, r.types, strict=True) if c not in _numeric(r)]
    if rule["uid"] == "hangwatch-hangup-spike-branch":
        assert strings == ["branch"]
        assert len({row[0] for row in r.rows}) == len(r.rows), "one row per branch (unique labels)"
    elif rule["uid"] == "hangwatch-stream-spike":
        assert strings[:3] == ["alert_id", "dimension", "value"] and r.rows
        assert len({row[0] for row in r.rows}) == len(r.rows), "one row per alert_id (unique labels)"
        assert not {"severity", "alertname", "hangwatch_kind"} & set(strings), "would clash with the rule's labels"
    elif rule["uid"] == "hangwatch-flag-escalated":
        assert strings[0] == "flag_id" and r.rows
        assert len({row[0] for row in r.rows}) == len(r.rows), "one row per flag (unique labels)"
        assert not {"severity", "alertname", "hangwatch_kind"} & set(strings), "would clash with the rule's labels"
    else:
        assert strings == [] and len(r.rows) == 1


@functools.cache
def _english_ids() -> dict[tuple[str, str], int]:
    """Panel id by dashboard and English title: the committed dashboards are in zh-CN, the
    tests name panels in English (same ids, same SQL in every language)."""
    s = load_settings().model_copy(update={"language": "en"})
    return {(name, p["title"]): p["id"] for name, d in dashboards.all_dashboards(s).items() for p in d["panels"]}


def _sql(title: str, dashboard: str = "hangup-risk-live", ref: str = "A") -> str:
    pid = _english_ids()[(dashboard, title)]
    p = next(p for p in _dashboards()[dashboard]["panels"] if p["id"] == pid)
    return next(t["rawSql"] for t in p["targets"] if t["refId"] == ref)


def _counts(events: list[Any]) -> tuple[int, int, int]:
    connected = sum(e.outcome in CONNECTED for e in events)
    return len(events), connected, sum(e.outcome == "hung_up" for e in events)


def _in_range(fx: Fixture, f: int = F, t: int = T) -> list[Any]:
    return [e for e in fx.events if f <= e.occurred_at_ms // 1000 <= t]


def test_summary_matches_python(backend: Backend, fixture_db: Fixture) -> None:
    row = run(backend, fixture_db, _sql("Hang-up rate")).dicts()[0]
    attempts, connected, hung = _counts(_in_range(fixture_db))
    assert (row["attempts"], row["connected"]) == (attempts, connected)
    assert row["hangup_rate"] == pytest.approx(hung / connected)


def test_rates_over_time_match_python(backend: Backend, fixture_db: Fixture) -> None:
    rows = run(backend, fixture_db, _sql("Rates over time")).dicts()
    buckets: dict[int, list[Any]] = defaultdict(list)
    for e in _in_range(fixture_db):
        s = e.occurred_at_ms // 1000
        buckets[s - s % INTERVAL].append(e)
    assert len(rows) == len(buckets)
    for r in rows:
        evs = buckets[int(r["time"].timestamp())]
        attempts, connected, hung = _counts(evs)
        assert r["hang-up rate"] == pytest.approx(hung / connected)
        assert r["contact rate"] == pytest.approx(connected / attempts)
        assert r["decline rate"] == pytest.approx(sum(e.outcome == "declined" for e in evs) / attempts)


def test_branch_filter_matches_python(backend: Backend, fixture_db: Fixture) -> None:
    row = run(backend, fixture_db, _sql("Hang-up rate"), variables={"branch": [SPIKE_BRANCH]}).dicts()[0]
    assert row["attempts"] == _counts([e for e in _in_range(fixture_db) if e.branch == SPIKE_BRANCH])[0]


def test_script_version_comparison_has_sample_sizes(backend: Backend, fixture_db: Fixture) -> None:
    rows = run(backend, fixture_db, _sql("By script version (话术)")).dicts()
    by: dict[str, list[Any]] = defaultdict(list)
    for e in _in_range(fixture_db):
        by[e.script_version or "(none)"].append(e)
    assert {r["script_version"]: (r["attempts"], r["connected"]) for r in rows} == {
        k: _counts(v)[:2] for k, v in by.items()}


def test_rolling_15_minutes_from_stream_windows(backend: Backend, fixture_db: Fixture) -> None:
    """hangup_rates FINAL (stale versions hidden) gives the same counts as the raw events."""
    rows = run(backend, fixture_db, _sql("Last 15 minutes by branch")).dicts()
    recent = [e for e in fixture_db.events if T - 900 <= e.occurred_at_ms // 1000 < T]
    by: dict[str, list[Any]] = defaultdict(list)
    for e in recent:
        by[e.branch].append(e)
    assert {r["branch"]: (r["attempts"], r["connected"]) for r in rows} == {k: _counts(v)[:2] for k, v in by.items()}


def test_heatmap_cell(backend: Backend, fixture_db: Fixture) -> None:
    rows = {r["branch"]: r for r in run(backend, fixture_db, _sql(
        "Hang-up rate: branch × hour of day (Asia/Shanghai)")).dicts()}
    # 08:00-12:00 Shanghai is 00:00-04:00 UTC: hour 10 local is 02:00-03:00 UTC.
    evs = [e for e in _in_range(fixture_db) if e.branch == SPIKE_BRANCH and (e.occurred_at_ms // 3_600_000) % 24 == 2]
    _, connected, hung = _counts(evs)
    assert rows[SPIKE_BRANCH]["10"] == pytest.approx(hung / connected)
    assert rows[SPIKE_BRANCH]["03"] is None


def test_stage_breakdown(backend: Backend, fixture_db: Fixture) -> None:
    rows = run(backend, fixture_db, _sql("Hang-up stage breakdown")).dicts()
    expected = Counter(e.hangup_stage for e in _in_range(fixture_db) if e.outcome == "hung_up" and e.hangup_stage)
    assert {r["stage"]: r["hung_up"] for r in rows if r["hung_up"]} == dict(expected)
    assert rows[0]["stage"] == "greeting"


def test_alerts_and_flags(backend: Backend, fixture_db: Fixture) -> None:
    alerts = run(backend, fixture_db, _sql("Active spike alerts")).dicts()
    assert [(a["dimension"], a["value"]) for a in alerts] == [("branch", SPIKE_BRANCH)]  # resolved one hidden
    assert run(backend, fixture_db, _sql("Spike alerts firing")).scalar() == fixture_db.open_alerts
    order = {"raised": 1, "escalated": 2, "resolved": 3}
    latest: dict[str, dict[str, Any]] = {}
    for f in fixture_db.flags:
        if f["flag_id"] not in latest or order[f["status"]] > order[latest[f["flag_id"]]["status"]]:
            latest[f["flag_id"]] = f
    open_flags = [f for f in latest.values() if f["status"] != "resolved"]
    n = run(backend, fixture_db, _sql("Open borrower flags")).scalar()
    assert n == len(open_flags) > 0
    top = run(backend, fixture_db, _sql("Top flagged borrowers")).dicts()
    assert len(top) == min(50, len(open_flags))
    assert top[0]["severity"] == "high" and top[0]["evidence"].count(";") == top[0]["calls"] - 1
    assert all(r["status"] != "resolved" and r["explanation"] for r in top)


def test_health_numbers(backend: Backend, fixture_db: Fixture) -> None:
    fx = fixture_db
    assert run(backend, fx, _sql("Dead letters", "pipeline-health")).scalar() == fx.dead_letters
    stored = run(backend, fx, _sql("Events per second: in, stored, dead-lettered", "pipeline-health", "B"))
    in_range = [r for r in fx.rows if F <= r[-1] <= T]  # ingested_at is the last column
    assert sum(v for _, v in stored.rows) * INTERVAL == pytest.approx(len(in_range))
    events_in = run(backend, fx, _sql("Events per second: in, stored, dead-lettered", "pipeline-health", "A"))
    assert sum(v for _, v in events_in.rows) * INTERVAL == pytest.approx(len(_in_range(fx, F, T - 1)))
    late = run(backend, fx, _sql("Late events", "pipeline-health"))
    assert sum(v for _, v in late.rows) == sum(1 for r in in_range if r[-1] - r[4] > 600) > 0
    reconciled = run(backend, fx, _sql("Late events", "pipeline-health", "B"))
    assert sum(v for _, v in reconciled.rows) == 4  # the four hourly "all" cells
    batches = run(backend, fx, _sql("Sink batch size", "pipeline-health")).dicts()
    first_interval = [r[1] for r in fx.sink_batches if r[0] == "call_events" and F <= r[4] < F + INTERVAL]
    expected = sum(first_interval) / len(first_interval)
    first = next(b for b in batches if b["table"] == "call_events")
    assert first["rows_per_batch"] == pytest.approx(expected)


def test_stream_spike_rule_states(backend: Backend, fixture_db: Fixture) -> None:
    """One instance per stored alert, 1 while the stream says firing, 0 once it resolved it."""
    rule = next(r for r in _rules() if r["uid"] == "hangwatch-stream-spike")
    q = rule["data"][0]
    rows = run(backend, fixture_db, q["model"]["rawSql"], f=T - q["relativeTimeRange"]["from"], t=T).dicts()
    assert {r["value"]: r["firing"] for r in rows} == {SPIKE_BRANCH: 1, "beijing-haidian": 0}
    spike = next(r for r in rows if r["value"] == SPIKE_BRANCH)
    assert (spike["hangup_rate"], spike["baseline_rate"], spike["connected"], spike["hung_up"]) == (
        "55%", "18%", "40", "22")
    assert spike["window_local"] == "2025-06-02 10:05-10:10"  # 02:05 UTC in Shanghai
    # outside the lookback: nothing
    assert not run(backend, fixture_db, q["model"]["rawSql"], f=F - 86400, t=F - 3600).rows


def test_spike_rule_fires_only_for_the_spike(backend: Backend, fixture_db: Fixture) -> None:
    rule = next(r for r in _rules() if r["uid"] == "hangwatch-hangup-spike-branch")
    sql = rule["data"][0]["model"]["rawSql"]
    threshold = rule["data"][2]["model"]["conditions"][0]["evaluator"]["params"][0]
    spike_end = int(START.timestamp()) + 2 * 3600 + 25 * 60
    rows = run(backend, fixture_db, sql, f=spike_end - 300, t=spike_end).rows
    firing = {b for b, rate in rows if rate > threshold}
    assert firing <= {SPIKE_BRANCH}

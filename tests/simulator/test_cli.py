"""`hangwatch simulate` without a broker: JSONL output, determinism, help and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hangwatch.cli import app
from hangwatch.schemas.call_outcome import parse_ts
from hangwatch.simulator import FaultConfig, SimConfig, generate
from hangwatch.simulator.jsonl import record_to_line

runner = CliRunner()
START = "2026-11-20T08:00:00+08:00"
ARGS = ["simulate", "--start", START, "--count", "3000", "--seed", "3", "--rate", "2", "--duplicates", "0.01",
        "--out-of-order", "0.05", "--late", "0.01", "--malformed", "0.01"]


def test_jsonl_output_is_reproducible_and_equals_the_api(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        res = runner.invoke(app, [*ARGS, "--out", str(path)])
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    cfg = SimConfig(seed=3, count=3000, rate=2, start_ms=parse_ts(START),
                    faults=FaultConfig(duplicates=0.01, out_of_order=0.05, late=0.01, malformed=0.01))
    assert a.read_bytes() == b"".join(record_to_line(r) for r in generate(cfg))


def test_stdout_output() -> None:
    res = runner.invoke(app, ["simulate", "--start", START, "--count", "5", "--seed", "1", "--out", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count('"schema_version":1') == 5


def test_duration_and_spike_options(tmp_path: Path) -> None:
    path = tmp_path / "spike.jsonl"
    res = runner.invoke(app, ["simulate", "--start", START, "--duration", "30m", "--rate", "5", "--seed", "1",
                              "--scenario", "branch_spike", "--spike-branch", "hangzhou-xihu", "--spike-at",
                              "start+10m", "--spike-minutes", "5", "--out", str(path)])
    assert res.exit_code == 0, res.output
    n = len(path.read_bytes().splitlines())
    assert 8000 < n < 10000


@pytest.mark.parametrize("args", [["simulate", "--help"], ["simulate", "replay", "--help"], ["--help"]])
def test_help(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0
    assert "simulate" in res.output


@pytest.mark.parametrize("extra, message", [
    (["--start", "2026-11-20T08:00:99", "--count", "5"], "not a time"),  # the forms follow (timeparse)
    (["--start", START, "--duration", "soon"], "not a duration"),
    (["--start", START], "needs --count or --duration"),
    (["--start", START, "--count", "5", "--out", "x.csv"], "ending in .jsonl"),
    (["--start", START, "--count", "5", "--scenario", "flood"], "unknown scenario"),
    (["--start", START, "--count", "5", "--late", "2"], "late share"),
    (["--start", START, "--count", "5", "--compression", "zip"], "lz4 or none"),
    (["--start", START, "--count", "5", "--scenario", "branch_spike", "--spike-branch", "nowhere"], "spike branch"),
])
def test_errors_say_what_is_wrong(extra: list[str], message: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", *extra, "--out", str(tmp_path / "x.jsonl")]
                        if "--out" not in extra else ["simulate", *extra])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_replay_rejects_a_broken_file_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nothing": 1}\n')
    res = runner.invoke(app, ["simulate", "replay", str(bad), "--topic", "never-created"])
    assert res.exit_code == 2
    assert "bad.jsonl:1" in " ".join(res.output.split())

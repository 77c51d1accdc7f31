"""No user error ever produces a traceback: every command, fed random and wrong arguments with
Kafka and ClickHouse unreachable, ends with an exit code from the documented set and at most a
few lines of output (docs/operations.md, "Exit codes")."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import typer

from hangwatch.cli import app, run
from hangwatch.cli.common import EXIT_FAILED, EXIT_USAGE

DOCUMENTED = {0, EXIT_FAILED, EXIT_USAGE}
# Commands that run until stopped, wait for a broker, or change the checkout (compile or remove
# the native core, write dashboards): only fed an option that cannot parse.
NOT_RANDOM = {"worker", "sink", "simulate", "simulate replay", "demo", "topics create", "topics list",
              "native build", "native clean", "grafana dashboards"}
JUNK = ["10x", "yesterdayy", "brnch", "-1", "0", "abc", "", "%s", "💥", "/nonexistent/dir/x.html", "2026-13-45",
        "now-", "1h30", "--bogus", "--since", "--until", "--dimension", "--window-size", "--limit", "--config",
        "/nonexistent.yaml", "--format", "xml", "--json", "--out", "-p", "x=1", "name", "=", "--help"]


def _commands() -> Iterator[tuple[str, list[str]]]:
    """(command path, its option names) for every leaf command."""
    root = typer.main.get_command(app)

    def walk(cmd: object, path: list[str]) -> Iterator[tuple[str, list[str]]]:
        subs = getattr(cmd, "commands", None)
        if path and (not subs or getattr(cmd, "invoke_without_command", False)):  # a group can run itself
            opts = [o for p in getattr(cmd, "params", []) for o in getattr(p, "opts", []) if o.startswith("-")]
            yield " ".join(path), opts
        for name, sub in (subs or {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


COMMANDS = sorted(_commands())


@pytest.fixture(autouse=True)
def unreachable_services(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("HANGWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__URL", "clickhouse://default@127.0.0.1:1/x")
    monkeypatch.setenv("GRAFANA_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("HANGWATCH_CONFIG", raising=False)


def _check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    t0 = time.monotonic()
    code = run(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, f"hangwatch {argv}: a traceback\n{err[-2000:]}"
    assert code in DOCUMENTED, f"hangwatch {argv}: exit {code}\n{err[-2000:]}"
    if code != 0:
        assert len(err.strip().splitlines()) <= 4, f"hangwatch {argv}: more than a few lines\n{err}"
    assert time.monotonic() - t0 < 15, f"hangwatch {argv}: took {time.monotonic() - t0:.0f} s"
    return code


def test_every_command_is_found() -> None:
    names = {c for c, _ in COMMANDS}
    assert {"query", "report", "reconcile", "migrate", "worker", "sink", "topics create"} <= names


@pytest.mark.parametrize(("command", "options"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_random_wrong_arguments_end_in_a_documented_exit_code(command: str, options: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(command)
    path = command.split()
    _check([*path, "--no-such-option"], capsys)
    if command in NOT_RANDOM:
        return
    for _ in range(25):
        args = [rng.choice(options + JUNK) for _ in range(rng.randint(1, 5))]
        _check([*path, *args], capsys)


def test_unreachable_kafka_is_one_line_within_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(["topics", "create"], capsys) == EXIT_FAILED


def test_unknown_command_and_bad_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(["nosuchcommand"], capsys) == EXIT_USAGE
    assert _check(["--config", "/nonexistent.yaml", "query", "freshness"], capsys) == EXIT_USAGE


def test_unreachable_grafana_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANGWATCH_ALERT_WEBHOOK_URL", "http://127.0.0.1:1/hook")
    monkeypatch.setenv("HANGWATCH_GRAFANA_CH_PASSWORD", "not-used")
    assert _check(["grafana", "deploy", "--url", "http://127.0.0.1:1", "--token", "t"], capsys) == EXIT_FAILED


def test_report_to_a_missing_folder_fails_before_any_query(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def no_query(*args: object, **kwargs: object) -> None:
        raise AssertionError("the report queried the store before checking --out")

    monkeypatch.setattr("hangwatch.sinks.backends.open_backend", no_query)
    assert _check(["report", "--out", "/nonexistent/dir/r.html"], capsys) == EXIT_FAILED

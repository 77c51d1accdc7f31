"""Options and helpers shared by the subcommands: global --config/--log-level, settings
access, logging and error reporting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hangwatch.i18n import GlossaryError, Words, words_for
from hangwatch.platform import timeparse
from hangwatch.platform.logs import setup_logging
from hangwatch.platform.settings import Settings, load_settings

console = Console(stderr=True)
_state: dict[str, Settings] = {}
# Exit codes (docs/operations.md, "Exit codes").
EXIT_FAILED = 1  # the command could not do its job: a service unreachable, a query refused
EXIT_USAGE = 2  # a wrong option, argument, time, setting or configuration file
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_INTERNAL = 70  # an unexpected failure (a bug): reported in one line, traceback with DEBUG
# Commands that run until stopped: they keep the client libraries' warnings (rate-limited);
# one-shot commands show only their own one-line result or error.
LONG_RUNNING = {"worker", "sink", "simulate", "demo"}


def describe_failure(e: BaseException) -> str:
    """One line for an exception nobody expected: its type and first line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def configure(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="HANGWATCH_CONFIG", exists=True, dir_okay=False,
                     help="YAML settings file (see README, Configuration)."),
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = None,
) -> None:
    """Streaming analytics for mortgage follow-up calls: hang-up rates, borrower flags, spike alerts."""
    overrides = {"log_level": log_level.upper()} if log_level else {}
    try:
        settings = load_settings(config, **overrides)
    except Exception as e:  # a bad setting must say which and how to fix it, then stop
        console.print(f"[red]Invalid configuration:[/red] {e}")
        raise typer.Exit(2) from e
    _state["settings"] = settings
    setup_logging(settings.log_level, console, quiet_libraries=ctx.invoked_subcommand not in LONG_RUNNING)


def settings() -> Settings:
    if "settings" not in _state:
        _state["settings"] = load_settings()
    return _state["settings"]


def words(language: str | None = None) -> Words:
    """The glossary in `language` (default: the `language` setting); exit 2 when the glossary
    file is unusable or the language unknown."""
    try:
        return words_for(settings(), language)
    except GlossaryError as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from e


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error that says what to do, and return the Exit to raise."""
    try:
        prefix = words_for(settings()).text("error.prefix")
    except GlossaryError:
        prefix = "error"
    # soft_wrap: one line however narrow the terminal, so it can be grepped and pasted.
    console.print(f"[red]{prefix}:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def usage_error(e: Exception, argv: list[str]) -> None:
    """One line for a usage error (typer's own message, e.g. an unknown option) in the
    configured language, with the command whose --help shows the usage."""
    detail = e.format_message() if hasattr(e, "format_message") else str(e)
    command = " ".join(a for a in argv[:2] if not a.startswith("-"))
    try:
        w = words_for(settings())
        line = w.text("error.usage", detail=detail, command=f"hangwatch {command}".strip())
        prefix = w.text("error.prefix")
    except Exception:  # the settings or glossary themselves are broken: say it plainly
        line, prefix = f"{detail} (see hangwatch {command} --help)", "error"
    console.print(f"[red]{prefix}:[/red] {line}", soft_wrap=True)


def fail_text(key: str, code: int = 1, **values: object) -> typer.Exit:
    """fail() with a sentence of the glossary, in the configured language."""
    return fail(words().text(key, **values), code)


def fail_for(e: Exception, code: int = 1, where: str | None = None) -> typer.Exit:
    """fail() for an error of a service: the common ones (Kafka or ClickHouse unreachable) in
    the configured language, with the library's detail; others as they say themselves."""
    from hangwatch.platform.kafka_admin import KafkaRefused, KafkaUnreachable
    from hangwatch.sinks.backends.errors import Unavailable

    if isinstance(e, KafkaUnreachable):
        return fail_text("error.kafka_unreachable", code, servers=e.servers)
    if isinstance(e, KafkaRefused):
        return fail_text("error.kafka_refused", code, servers=e.servers, protocol=e.protocol)
    if isinstance(e, Unavailable):
        return fail_text("error.clickhouse_unreachable", code, detail=e)
    return fail(f"{e} ({where})" if where else str(e), code)


def parse_when(text: str, *, now: datetime | None = None, base: datetime | None = None) -> datetime:
    """A time option (timeparse's grammar, local times in the configured zone), or exit 2
    with one line naming the forms."""
    try:
        return timeparse.parse_time(text, now=now or datetime.now(tz=UTC), tz=timeparse.local_zone(settings()),
                                    base=base)
    except timeparse.TimeParseError as e:
        raise bad_time(text) from e


def bad_time(text: str) -> typer.Exit:
    """Exit 2 with one line naming the time forms, in the configured language."""
    return fail_text("error.bad_time", 2, text=repr(text), forms=words().text("time_forms"))


def time_range(since: str, until: str | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """--since/--until as a [start, end) range (until defaults to now; a bare duration in
    --since counts back from the end), or exit 2 with one line naming the forms."""
    try:
        return timeparse.parse_range(since, until, now=now or datetime.now(tz=UTC),
                                     tz=timeparse.local_zone(settings()))
    except timeparse.ReversedRange as e:
        raise since_before_until(e.start, e.end) from e
    except timeparse.TimeParseError as e:
        raise bad_time(e.text) from e


def since_before_until(start: datetime, end: datetime) -> typer.Exit:
    tz = timeparse.local_zone(settings())
    return fail_text("error.since_before_until", 2, start=timeparse.format_local(start, tz),
                     end=timeparse.format_local(end, tz))

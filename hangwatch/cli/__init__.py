"""The `hangwatch` command: every process and tool of the pipeline is a subcommand.

Each subcommand lives in its own module and registers itself on the app below (explicitly,
no plugin discovery). `--help` works on every command."""

from __future__ import annotations

import logging
import sys

import typer

from hangwatch.cli import demo as _demo
from hangwatch.cli import export as _export
from hangwatch.cli import grafana as _grafana
from hangwatch.cli import migrate as _migrate
from hangwatch.cli import native as _native
from hangwatch.cli import query as _query
from hangwatch.cli import reconcile as _reconcile
from hangwatch.cli import report as _report
from hangwatch.cli import rollups as _rollups
from hangwatch.cli import simulate as _simulate
from hangwatch.cli import sink as _sink
from hangwatch.cli import topics as _topics
from hangwatch.cli import worker as _worker
from hangwatch.cli.common import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    configure,
    console,
    describe_failure,
    usage_error,
)

app = typer.Typer(
    name="hangwatch",
    help="Streaming analytics for mortgage follow-up calls: hang-up rates, borrower flags, spike alerts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(configure)
_export.register(app)
_grafana.register(app)
_migrate.register(app)
_native.register(app)
_query.register(app)
_reconcile.register(app)
_rollups.register(app)
_report.register(app)
_simulate.register(app)
_sink.register(app)
_topics.register(app)
_worker.register(app)
_demo.register(app)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


def run(argv: list[str]) -> int:
    """Run the command line; returns the exit code (docs/operations.md, "Exit codes").

    Every failure a user can cause or meet (a wrong option, an unreachable service, a refused
    query) ends in one line that says what to do, never a traceback: the commands report what
    they expect, and anything else is caught here. --log-level DEBUG shows the traceback."""
    try:
        code = app(args=argv, prog_name="hangwatch", standalone_mode=False)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        console.print("aborted")
        return EXIT_INTERRUPTED
    except typer.TyperException as e:  # a usage error: wrong option, missing argument
        usage_error(e, argv)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        console.print(f"[red]error:[/red] {describe_failure(e)} (run with --log-level DEBUG for details)",
                      soft_wrap=True)
        return EXIT_INTERNAL
    return code if isinstance(code, int) else 0

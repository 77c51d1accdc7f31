"""The `hangwatch` command: every process and tool of the pipeline is a subcommand.

Each subcommand lives in its own module and registers itself on the app below (explicitly,
no plugin discovery). `--help` works on every command."""

from __future__ import annotations

import typer

from hangwatch.cli import demo as _demo
from hangwatch.cli import grafana as _grafana
from hangwatch.cli import migrate as _migrate
from hangwatch.cli import native as _native
from hangwatch.cli import query as _query
from hangwatch.cli import reconcile as _reconcile
from hangwatch.cli import report as _report
from hangwatch.cli import simulate as _simulate
from hangwatch.cli import sink as _sink
from hangwatch.cli import topics as _topics
from hangwatch.cli import worker as _worker
from hangwatch.cli.common import configure

app = typer.Typer(
    name="hangwatch",
    help="Streaming analytics for mortgage follow-up calls: hang-up rates, borrower flags, spike alerts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(configure)
_grafana.register(app)
_migrate.register(app)
_native.register(app)
_query.register(app)
_reconcile.register(app)
_report.register(app)
_simulate.register(app)
_sink.register(app)
_topics.register(app)
_worker.register(app)
_demo.register(app)


def main() -> None:
    app()

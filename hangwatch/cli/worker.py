"""`hangwatch worker`: run one stream worker (Faust) of the consumer group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hangwatch.cli.common import fail, fail_for, settings


def worker(
    web_port: Annotated[int | None, typer.Option(help="Faust web port (enables it); one per worker.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")] = None,
    faust_log_level: Annotated[str, typer.Option(help="Faust's own log level: debug, info, warn, error.")] = "warn",
    data_dir: Annotated[Path | None, typer.Option(help="Local state: the borrower store (RocksDB); one per worker "
                                                       "on a machine. Default: worker.data_dir.")] = None,
) -> None:
    """Consume call-outcomes; emit hangup-rates, borrower-flags, hangup-alerts and DLQ records.

    Scale out by starting more workers with the same settings: they form one consumer group
    and share the partitions; state moves with the partitions through the state changelogs.
    Workers on one machine need a --data-dir each (the borrower store lives there, in RocksDB)."""
    from hangwatch.platform.kafka_admin import ensure_topics
    from hangwatch.platform.native import StaleNativeBuild, verify_core

    try:  # before the stream core is loaded: a stale compiled build must not run
        verify_core()
    except StaleNativeBuild as e:
        raise fail_for(e) from e
    from hangwatch.streams.worker import DataDirInUse, run_worker

    s = settings()
    if web_port is not None:
        s.worker.web_enabled = True
        s.worker.web_port = web_port
    if data_dir is not None:
        s.worker.data_dir = data_dir
    if metrics_port is not None:
        s.metrics_port = metrics_port
    if not s.worker.rules_file.is_file():
        raise fail(f"rules file {s.worker.rules_file} not found; set HANGWATCH_WORKER__RULES_FILE")
    try:
        ensure_topics(s.kafka)
    except RuntimeError as e:
        raise fail_for(e) from e
    try:
        run_worker(s, loglevel=faust_log_level)
    except DataDirInUse as e:
        raise fail_for(e) from e


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)

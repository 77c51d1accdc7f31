"""Wires the stages into Faust agents and timers, and runs a worker process.

The agents only take batches and hand them to the stages; all numbers are decided in
streams.core. Any unexpected exception in a stage stops the process at once (fail-stop)
instead of letting Faust acknowledge a batch whose results were not written: the supervisor
(systemd, Kubernetes, docker compose `restart:`) starts it again and the batch is replayed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import faust

from hangwatch.settings import Settings
from schemas.topics import CALL_OUTCOMES, RATE_PARTIALS
from streams.app import Pipeline, create_pipeline
from streams.merge_stage import MergeStage
from streams.partition_stage import PartitionStage

log = logging.getLogger(__name__)


def _fail_stop(stage: str, exc: BaseException) -> None:
    log.critical("%s stage failed; stopping the worker so the batch is replayed after restart: %r", stage, exc,
                 exc_info=exc)
    logging.shutdown()
    os._exit(70)


def build(settings: Settings) -> tuple[Pipeline, PartitionStage, MergeStage]:
    pipe = create_pipeline(settings)
    app = pipe.app
    w = settings.worker
    stage1 = PartitionStage(pipe)
    stage2 = MergeStage(pipe)

    @app.agent(pipe.source, name="partition-stage")
    async def partition_agent(stream: Any) -> None:
        async for events in stream.take_events(w.batch_max, within=w.batch_within_s):
            try:
                await stage1.process(events)
            except Exception as e:
                _fail_stop("partition", e)

    @app.agent(pipe.partials, name="merge-stage")
    async def merge_agent(stream: Any) -> None:
        async for events in stream.take_events(w.batch_max, within=w.batch_within_s):
            try:
                await stage2.process(events)
            except Exception as e:
                _fail_stop("merge", e)

    def assigned(registry_name: str) -> set[int]:
        topic_name = settings.kafka.topic(registry_name)
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic_name}

    @app.timer(interval=1.0)
    async def close_idle_windows() -> None:
        # Only after table recovery: a stage must not rebuild state from a half-read changelog.
        if not app.tables.recovery.completed.is_set():
            return
        try:
            await stage1.tick(assigned(CALL_OUTCOMES))
        except Exception as e:
            _fail_stop("partition timer", e)

    @app.timer(interval=30.0)
    async def expire_merged() -> None:
        if not app.tables.recovery.completed.is_set():
            return
        try:
            await stage2.tick(assigned(RATE_PARTIALS))
        except Exception as e:
            _fail_stop("merge timer", e)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: faust.App, revoked: set[Any], **_: Any) -> None:
        # Drop cached state of partitions that move away; it is rebuilt from the table
        # (recovered from the changelog) if they come back.
        stage1.forget(tp.partition for tp in revoked if tp.topic == settings.kafka.topic(CALL_OUTCOMES))
        stage2.forget(tp.partition for tp in revoked if tp.topic == settings.kafka.topic(RATE_PARTIALS))

    return pipe, stage1, stage2


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker process until SIGTERM/SIGINT (blocking)."""
    pipe, _, _ = build(settings)
    worker = faust.Worker(pipe.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr="127.0.0.1")
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()

"""The Faust application: broker connection, topics, and the stages' changelog topics.

No Faust tables: the stages write their state in batches to changelog topics
(streams.changelogs, streams.table_io) and restore it from them (streams.changelog_restore,
streams.borrower_store): one changelog record per changed key per batch instead of one per
event, no windowed tables (faust-streaming #193, #385), and no Faust table recovery (which lost
records when a rebalance came during it, and paused a worker for seconds). Keys in every
changelog start with the source partition number ("3|...").
"""

from __future__ import annotations

import dataclasses
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials

from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import (
    BORROWER_FLAGS,
    CALL_OUTCOMES,
    DLQ,
    HANGUP_ALERTS,
    HANGUP_RATES,
    RATE_PARTIALS,
    topic,
)
from hangwatch.streams import changelogs
from hangwatch.streams.faust_transport import HangwatchApp


@dataclasses.dataclass
class Pipeline:
    """Everything the stages need from Faust, created once per process."""

    settings: Settings
    app: faust.App
    source: faust.TopicT
    partials: faust.TopicT
    source_batches: faust.ChannelT  # call-outcomes, one list of messages per fetch
    partials_batches: faust.ChannelT  # hangwatch-rate-partials, likewise
    rates_out: faust.TopicT
    flags_out: faust.TopicT
    alerts_out: faust.TopicT
    dlq_out: faust.TopicT
    rates_changelog: faust.TopicT  # per source partition: window cells, seen ids, watermark
    borrowers_changelog: faust.TopicT  # per borrower: recent events, flag episodes
    merge_changelog: faust.TopicT  # per partials partition: merged cells, source watermarks, spike state


def _credentials(s: Settings) -> Any:
    k = s.kafka
    if k.security_protocol.startswith("SASL"):
        ctx = k.aiokafka_kwargs().get("ssl_context")
        return SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism or "PLAIN",
            ssl_context=ctx,
        )
    if k.security_protocol == "SSL":
        return SSLCredentials(k.aiokafka_kwargs()["ssl_context"])
    return None


def create_pipeline(s: Settings) -> Pipeline:
    w = s.worker
    brokers = ";".join(f"kafka://{h.strip()}" for h in s.kafka.bootstrap_servers.split(","))
    n_source = topic(CALL_OUTCOMES).partitions
    w.data_dir.mkdir(parents=True, exist_ok=True)
    app = HangwatchApp(
        w.app_id,
        broker=brokers,
        broker_credentials=_credentials(s),
        store="memory://",
        datadir=str(w.data_dir),
        topic_partitions=n_source,
        # Topics come from the registry (`hangwatch topics create`), the changelogs from
        # streams.changelogs; Faust itself declares only its internal assignor topic.
        topic_allow_declare=True,
        topic_replication_factor=s.kafka.replication_factor,
        web_enabled=w.web_enabled,
        web_port=w.web_port,
        web_host="127.0.0.1",
        broker_session_timeout=w.broker_session_timeout_s,
        broker_heartbeat_interval=w.broker_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        broker_max_poll_records=w.batch_max,
        # per partition and fetch; Faust's 1 MB (~2,000 events) would cut batches short of batch_max
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=max(4096, w.batch_max * 2),
        # Offsets are committed by Faust's commit loop only for acked events; the stages
        # ack a batch after its outputs and state are written.
        broker_commit_interval=1.0,
        # Events of a revoked partition that were buffered but not processed are never
        # acknowledged (see streams.worker); do not wait for them at rebalance.
        stream_wait_empty=False,
        worker_redirect_stdouts=False,
    )
    app.linger_fetches(w.fetch_min_bytes, w.fetch_linger_ms)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    name = s.kafka.topic
    source = app.topic(name(CALL_OUTCOMES), **raw)  # type: ignore[arg-type]
    partials = app.topic(name(RATE_PARTIALS), partitions=topic(RATE_PARTIALS).partitions, **raw)  # type: ignore[arg-type]
    out = {t: app.topic(name(t), **raw)  # type: ignore[arg-type]
           for t in (HANGUP_RATES, BORROWER_FLAGS, HANGUP_ALERTS, DLQ)}

    def changelog(c: changelogs.Changelog) -> faust.TopicT:
        # created by the worker (changelogs.ensure_changelogs), not declared through Faust
        return app.topic(c.name(w.app_id), partitions=changelogs.partitions(), **raw)  # type: ignore[arg-type]

    return Pipeline(
        settings=s,
        app=app,
        source=source,
        partials=partials,
        source_batches=app.batches_of(source),
        partials_batches=app.batches_of(partials),
        rates_out=out[HANGUP_RATES],
        flags_out=out[BORROWER_FLAGS],
        alerts_out=out[HANGUP_ALERTS],
        dlq_out=out[DLQ],
        rates_changelog=changelog(changelogs.RATES),
        borrowers_changelog=changelog(changelogs.BORROWERS),
        merge_changelog=changelog(changelogs.MERGE),
    )


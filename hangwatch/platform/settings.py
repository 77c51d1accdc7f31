"""One typed, validated settings object for every process of the pipeline.

Sources, highest priority first: keyword arguments, environment variables with the prefix
`HANGWATCH_` (nested with `__`, e.g. `HANGWATCH_KAFKA__BOOTSTRAP_SERVERS`), a YAML file named
by `HANGWATCH_CONFIG` (or `--config` on the CLI), then the defaults below. Secrets are
SecretStr and come from the environment; they are never written to files or logs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hangwatch.schemas.call_outcome import Decoder
from hangwatch.schemas.topics import BORROWER_FLAGS, CALL_OUTCOMES, DLQ, HANGUP_ALERTS, HANGUP_RATES

PACKAGE = Path(__file__).resolve().parent.parent  # the hangwatch package
ROOT = PACKAGE.parent  # the checkout (local state lives in its .local/)


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Prepended to every registry topic name: lets several environments (or test runs) share
    # one cluster without seeing each other's data.
    topic_prefix: str = ""
    # Replicas of every topic the project creates (registry topics, the worker's changelogs,
    # Faust's internal topic). 1 suits a one-broker development cluster; use 3 in production.
    replication_factor: int = Field(default=1, ge=1)
    # In-sync replicas a write must reach (with the producers' acks=all) on every topic the
    # project creates: 2 with replication_factor 3 keeps writing through one broker's loss
    # without ever acknowledging a record that lives on one broker only.
    min_insync_replicas: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"kafka.min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                             f"kafka.replication_factor ({self.replication_factor})")
        return self

    def topic(self, name: str) -> str:
        """The broker-side name of a registry topic."""
        return self.topic_prefix + name

    def topic_configs(self) -> dict[str, str]:
        """Broker-side configs every topic the project creates gets, besides its own."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection options in the form aiokafka's clients take."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                              "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kw

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Connection options in the form kafka-python's clients take."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers.split(","),
                              "security_protocol": self.security_protocol}
        if self.ssl_cafile:
            kw["ssl_cafile"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            kw["ssl_certfile"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            kw["ssl_keyfile"] = str(self.ssl_keyfile)
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kw


class ClickHouseSettings(BaseModel):
    # clickhouse://user:password@host:9000/db (native protocol; add ?secure=1 for TLS).
    # Unset: the embedded store (chdb) in `embedded_path` is used.
    url: SecretStr | None = None
    embedded_path: Path = ROOT / ".local" / "chdb"
    database: str = "hangwatch"
    # Keep data this many days; older partitions are dropped (TTL where the server has it).
    retention_days: dict[str, int] = Field(default_factory=lambda: {
        "call_events": 400, "hangup_rates": 400, "borrower_flags": 730, "hangup_alerts": 730, "dead_letters": 90,
        "sink_batches": 30, "borrower_calls": 400, "rollup_1m": 35, "rollup_1h": 400, "rollup_1d": 1100,
        "rollup_compact_1m": 35, "rollup_compact_1h": 400, "rollup_compact_1d": 1100,
    })
    # Native protocol timeouts. Short enough that an unreachable server is noticed (and the
    # sink pauses) within seconds, long enough for a large INSERT to a busy server.
    connect_timeout_s: float = 5.0
    send_receive_timeout_s: float = 60.0
    # Cluster mode (docs/storage.md, "Cluster mode"): the name of a cluster in the servers'
    # <remote_servers>. Set, the migrations create Replicated* tables named <table>_local on
    # every host (ON CLUSTER, ZooKeeper paths from the <shard>/<replica> macros) and a
    # Distributed table under the plain name; every read and write goes through those.
    # Empty: one server, plain MergeTree tables.
    cluster: str = ""
    # Cluster mode: an INSERT returns once the rows are on this many replicas of their shard
    # (insert_quorum; with insert_distributed_sync=1), so the sink commits offsets only then.
    insert_quorum: int = Field(default=2, ge=0)
    zookeeper_path: str = "/clickhouse/tables/{shard}/{database}/{table}"

    @property
    def embedded(self) -> bool:
        return self.url is None

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, v: str) -> str:
        if v and not v.replace("_", "").isalnum():
            raise ValueError("clickhouse.cluster must be a plain name of the servers' <remote_servers> (letters, "
                             "digits, _)")
        return v

    @field_validator("url")
    @classmethod
    def _native_url(cls, v: SecretStr | None) -> SecretStr | None:
        # Checked here so a wrong URL is a configuration error at start, not a failure later.
        if v is not None and not v.get_secret_value().startswith(("clickhouse://", "clickhouses://")):
            raise ValueError("clickhouse.url must look like clickhouse://user:password@host:9000/db "
                             "(native protocol; clickhouses:// or ?secure=1 for TLS)")
        return v


class WorkerSettings(BaseModel):
    app_id: str = "hangwatch"
    window_sizes_s: list[int] = Field(default_factory=lambda: [60, 300, 3600])
    grace_s: int = 600
    # A partition that receives no events for this long advances its watermark by the wall
    # clock, so windows close even when no more events arrive for them.
    idle_close_s: float = 10.0
    # Each fetch from the broker is one batch (streams.faust_adapter), of at most this many
    # messages: bigger batches amortise the broker round trips that every batch waits for.
    # Measured (bench.state_worker, 1M borrowers): 5,000 and 10,000 give the same throughput,
    # 10,000 holds ~40 MB more while a backlog is worked through; 2,000 is ~10 % slower.
    batch_max: int = Field(default=5000, ge=1)
    # The broker holds a fetch until it has fetch_min_bytes or fetch_linger_ms passed: at low
    # rates a batch then gathers this much time of events instead of a few (each batch costs
    # broker round trips); under load fetches fill at once. The linger adds at most this much
    # latency to flags and rates.
    fetch_linger_ms: int = Field(default=100, ge=0, le=5000)
    fetch_min_bytes: int = Field(default=1024 * 1024, ge=1)
    # Borrower evidence kept this long (event time) beyond the longest rule span.
    borrower_retention_s: int = 8 * 24 * 3600
    # CPython's young-generation gc threshold (its default: 700). Above one batch's ~30,000
    # container allocations, batch objects are freed by reference counting before a collection
    # scans and promotes them: gc pauses 1.85 -> 0.28 s per 202k messages, worker throughput
    # +20 % (hangwatch.platform.gc_policy).
    gc_young_threshold: Annotated[int, Field(ge=100)] = 50_000
    # glibc's malloc (hangwatch.platform.malloc_policy): at most this many arenas and a fixed
    # mmap threshold, so that freed C heap goes back to the system instead of staying in the
    # worker's RSS (RocksDB's threads, fetch buffers); 0 leaves glibc's own default.
    malloc_arena_max: int = Field(default=2, ge=0)
    malloc_mmap_threshold_kb: int = Field(default=128, ge=0)
    # Borrowers with no call for longer than the rules' retention are aged out of the
    # borrower store (streams.core.flags.sweep): one pass over a partition this often, this
    # many borrowers per timer tick (about 15 ms of work).
    borrower_sweep_interval_s: float = 600.0
    borrower_sweep_batch: int = 5000
    # Final windows the merge stage keeps this long after they become final, then deletes
    # with tombstones: a replayed snapshot of a window still held is a no-op instead of an
    # ignored partial. The partition stage keeps none past its close (the spike baseline has
    # its own state). Each minute kept costs a worker one cell per dimension value
    # (bench/HISTORY.md: a 2-hour default held ~45 MB more than this one).
    window_retention_s: int = Field(default=15 * 60, ge=0)
    web_port: int = 6066
    web_enabled: bool = False
    broker_session_timeout_s: float = 60.0
    # Static group membership (Kafka's group.instance.id): a stable name per worker (a host or
    # pod name; unique in the group). A worker restarted with the same name gets its partitions
    # back at once instead of waiting for the session timeout and a rebalance; in exchange a
    # worker that is gone for good keeps its partitions until broker_session_timeout_s passes.
    # None: dynamic membership (every restart rebalances after the dead member times out).
    instance_id: str | None = None
    broker_heartbeat_interval_s: float = 3.0
    rules_file: Path = PACKAGE / "streams" / "rules.yaml"
    # Deprecated: the top-level `timezone` is the one zone. Still accepted (with a warning) and
    # copied from it, so readers of worker.timezone see the one value.
    timezone: str = ""
    # Local state: the borrower store's RocksDB databases (one per source partition held) and
    # Faust's own files. Each worker on a machine needs its own directory (the worker takes a
    # lock on it and refuses to share it). Details: docs/operations.md.
    data_dir: Path = ROOT / ".local" / "faust"
    # Where the borrower states live (streams.borrower_store). rocksdb: on disk (RocksDB via
    # rocksdict), memory bounded by the options below whatever the number of borrowers, and a
    # partition taken over reads only the changelog written since its local copy. memory: a
    # Python dict (~300 bytes per borrower; the whole changelog partition is read at every
    # assignment).
    borrower_store: Literal["rocksdb", "memory"] = "rocksdb"
    # RocksDB memory of the borrower store, per worker whatever the number of borrowers and of
    # partitions it holds (streams.borrower_store; bench/HISTORY.md has the measurements):
    # - block cache: one for all partitions, holding data blocks AND the index and filter
    #   blocks, which grow with the number of borrowers (~2.5 MB per million) and were held
    #   outside any cache before;
    # - memtables: all partitions' memtables together (a write buffer manager: the largest
    #   memtable is flushed when they reach it); each is at most rocksdb_write_buffer_mb.
    # A worker through 1M borrowers peaked at 268-280 MB with a 4 MB write buffer, 283-290 MB
    # with 8 MB (python -m bench.state_worker).
    rocksdb_write_buffer_mb: int = Field(default=4, ge=1)
    rocksdb_memtables_mb: int = Field(default=16, ge=1)
    rocksdb_block_cache_mb: int = Field(default=32, ge=1)

    @field_validator("window_sizes_s")
    @classmethod
    def _sizes_positive(cls, v: list[int]) -> list[int]:
        if not v or any(s <= 0 for s in v):
            raise ValueError("window sizes must be positive seconds")
        return sorted(set(v))


class AlertSettings(BaseModel):
    """Spike alerts (docs/contract.md#spike-alerts; the rule: streams/core/spikes.py). Defaults
    equal AlertConfig's; tuned with `make bench-alerts` (bench/HISTORY.md)."""

    # The final windows the detector judges (a span of them at a time: scan_windows below).
    window_size_s: int = 60
    # Span of the trailing baseline, used until the seasonal one has enough calls.
    baseline_s: int = 24 * 3600
    # Connected calls a span needs to be judged.
    min_connected: int = 30
    min_baseline_connected: int = 100
    # Threshold of a span's evidence: standard deviations of its hang-ups above what its
    # windows' baselines expect (streams/core/spikes.py). 4.6 (not 1.96): every series is
    # judged every minute over up to scan_windows spans, and window counts have heavier tails
    # than a binomial; 4.6 with spans of 2-10 minutes: 0.45 false alerts a day per 100 series
    # on the benchmark (bench/HISTORY.md, third round).
    z: float = 4.6
    # Margin over the TRAILING baseline: the expected rate is baseline * (1 + margin).
    # 0.5: the daily rhythm of hang-ups (lunch, evenings) is a real but expected change that a
    # trailing baseline does not know about.
    min_relative_increase: float = 0.5
    # Consecutive non-spiking final windows that resolve a firing alert (hysteresis): 10
    # windows of 60 s.
    resolve_after_windows: int = 10
    # Seasonal baseline: the same hour of the previous seasonal_days days (0 = trailing only),
    # used once it holds min_seasonal_connected connected calls, with its own margin (0: it
    # already knows the daily rhythm; rate_drift covers its wander).
    seasonal_days: Annotated[int, Field(ge=0)] = 7
    min_seasonal_connected: Annotated[int, Field(ge=0)] = 300
    seasonal_relative_increase: float = 0.0
    # The scan: a window spikes when the span of the last k windows ending with it, for some k
    # in [min_scan_windows, scan_windows], passes z (a spike is seen on the first minutes that
    # carry enough of it). One-minute spans alone have the most skewed counts: 2.
    scan_windows: Annotated[int, Field(ge=1)] = 10
    min_scan_windows: Annotated[int, Field(ge=1)] = 2
    # Relative wander of a series' hang-up rate around its baseline over minutes to an hour
    # (the mix of first calls and retries moves): a variance term (rate_drift x expected
    # hang-ups)^2, so busy series need a relative excess too. ~0.03-0.05 on the simulator.
    rate_drift: Annotated[float, Field(ge=0)] = 0.03


class PrivacySettings(BaseModel):
    """Personal data (docs/privacy.md). Keys only from the environment:
    HANGWATCH_PRIVACY__HASH_KEY, HANGWATCH_PRIVACY__PSEUDONYMISE_KEY."""

    # HMAC-SHA256 key of the hashes a dead letter keeps of the mobile and ID numbers masked in
    # it (so the producer, who shares the key, can find the record of a number it sent). Unset:
    # the numbers are masked and no hash is kept (an unkeyed hash of an 11-digit number is no
    # protection: it is reversed by trying them all).
    hash_key: SecretStr | None = None
    # Top-level fields pseudonymised at ingest, before the personal-data check, for producers
    # that can only send raw identifiers: identifiers (call_id, borrower_id, loan_id,
    # agent_id) or extra fields, e.g. ["borrower_id"]. Each value becomes
    # 'p-' + 32 hex characters of HMAC-SHA256(pseudonymise_key, value). Changing the key
    # changes every pseudonym (a new borrower for the counts and rules).
    pseudonymise_fields: list[str] = Field(default_factory=list)
    pseudonymise_key: SecretStr | None = None
    # Dashboards, alert rules and the report read the dashboard database, where borrower and
    # loan ids are masked (docs/privacy.md, "Masked borrower ids"); true: the store's own
    # tables, full pseudonymous ids. `hangwatch export` always has the full ids.
    show_borrower_ids: bool = False
    # The dashboard database ('' = <clickhouse.database>_dash) and the <remote_servers>
    # cluster it reads the store through as a privileged read-only user (a loopback entry
    # that points at the server itself; deploy/ writes one). In cluster mode clickhouse.cluster
    # is used. Read when `hangwatch migrate` creates the database (0015): changing them later
    # needs the database re-created.
    dashboard_database: str = ""
    dashboard_cluster: str = "hangwatch_dashboards"

    @field_validator("hash_key", "pseudonymise_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # docker compose passes an unset optional variable as "" (.env.example)
        return None if v == "" else v

    @field_validator("hash_key", "pseudonymise_key")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("privacy keys must be at least 16 characters (32 random bytes, e.g. base64, advised)")
        return v

    @model_validator(mode="after")
    def _pseudonymisation_needs_key(self) -> PrivacySettings:
        if self.pseudonymise_fields and self.pseudonymise_key is None:
            raise ValueError("privacy.pseudonymise_fields needs privacy.pseudonymise_key "
                             "(set HANGWATCH_PRIVACY__PSEUDONYMISE_KEY)")
        try:
            self.decoder()
        except ValueError as e:
            raise ValueError(f"privacy.pseudonymise_fields: {e}") from None
        return self

    def hash_key_bytes(self) -> bytes | None:
        return self.hash_key.get_secret_value().encode() if self.hash_key else None

    def decoder(self) -> Decoder:
        """The contract decoder with this deployment's ingest pseudonymisation: built once per
        process (worker partition stage, sink), never looked up per event."""
        key = self.pseudonymise_key.get_secret_value().encode() if self.pseudonymise_key else None
        return Decoder(self.pseudonymise_fields, key)


def _default_sink_topics() -> dict[str, str]:
    return {"call_events": CALL_OUTCOMES, "dead_letters": DLQ, "hangup_rates": HANGUP_RATES,
            "borrower_flags": BORROWER_FLAGS, "hangup_alerts": HANGUP_ALERTS}


class AnalyticsSettings(BaseModel):
    """Comparisons and the best time to call (`hangwatch query compare`, `hangwatch query
    best-times`, the remedies dashboard and the report; docs/analytics.md)."""

    # Confidence of every interval, and 1 - the p-value a difference is called significant at.
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    # The change the sample-size figure is for: a relative change of the reference group's
    # rate (0.2: a fifth fewer hang-ups, e.g. 30 % -> 24 %), two-sided, at `power`.
    detect_relative_change: Annotated[float, Field(gt=0, lt=1)] = 0.2
    power: Annotated[float, Field(gt=0.5, lt=1)] = 0.8
    # Calls of one borrower are not independent:
    # docs/analytics.md, "Borrowers: calls are not independent". None: the design effect of
    # each rate is estimated from the borrowers' calls in the range (borrower_calls; Kish,
    # 1 + (m - 1) x ICC); a number >= 1 fixes it (1 = calls independent). Panels, which run on
    # the dashboards' time range without the estimate, use this number or 1.
    design_effect: Annotated[float, Field(ge=1)] | None = None
    # The estimate reads the calls of every borrower up to this many calls in the range, and
    # beyond it a hash sample of the borrowers with about as many calls (0: always every
    # borrower): the grouping per borrower is what takes the time on long ranges.
    design_effect_sample_calls: Annotated[int, Field(ge=0)] = 500_000
    # Before/after a rollout: days on either side of the rollout date.
    rollout_days: Annotated[int, Field(ge=1)] = 14
    # Warn that the mix shifted when the credit grade x campaign shares differ between the
    # periods at this significance AND one share moved by at least min_share_change.
    mix_shift_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    mix_shift_min_share_change: Annotated[float, Field(ge=0, lt=1)] = 0.02
    # Best time to call: a local weekday x hour slot is judged with at least these many attempts
    # and connected calls (the minimum sample), and the best `best_time_top` are recommended.
    best_time_min_attempts: Annotated[int, Field(ge=1)] = 200
    best_time_min_connected: Annotated[int, Field(ge=0)] = 50
    best_time_top: Annotated[int, Field(ge=1)] = 3
    # Days of calls the best-time recommendation reads (ending now) when no range is given.
    best_time_days: Annotated[int, Field(ge=1)] = 28


class GrafanaSettings(BaseModel):
    """Thresholds of Grafana's own alert rules (the stream's spike rule has its own: alerts.*);
    used when the dashboards and rules are generated (`hangwatch grafana dashboards|deploy`)."""

    # 5-minute hang-up rate of one branch that pages (with alerts.min_connected connected calls)
    rate_alert_threshold: Annotated[float, Field(gt=0, le=1)] = 0.35
    # dead letters in 10 minutes that page
    dlq_alert_threshold: Annotated[int, Field(ge=1)] = 100
    # no call stored for this long: the pipeline has stalled
    stalled_after_s: Annotated[int, Field(ge=60)] = 300


class SinkSettings(BaseModel):
    group_id: str = "hangwatch-sink"
    # A flush (one INSERT per table that has rows) happens when any table has batch_rows rows
    # buffered or flush_interval_s after the oldest buffered row arrived: about one INSERT per
    # table per second under load, fewer and larger parts than ClickHouse's ~1/s guidance.
    batch_rows: Annotated[int, Field(ge=1)] = 50_000
    flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # ... and sooner when the input has been quiet for idle_flush_s (the end of a burst or of a
    # backlog), if the last flush is min_flush_gap_s ago: rows land ~0.3 s after a burst
    # instead of up to flush_interval_s, while a steady stream (never quiet that long) keeps one
    # INSERT per interval and a sparse one gets at most one per gap. 0 disables it.
    idle_flush_s: Annotated[float, Field(ge=0)] = 0.3
    min_flush_gap_s: Annotated[float, Field(ge=0)] = 0.5
    # ClickHouse unreachable: retry the same batch after 0.5 s, 1 s, 2 s, ... up to this.
    initial_retry_backoff_s: Annotated[float, Field(gt=0)] = 0.5
    max_retry_backoff_s: Annotated[float, Field(gt=0)] = 30.0
    # Table -> topic it is filled from (tests and side-by-side deployments rename topics).
    topics: dict[str, str] = Field(default_factory=_default_sink_topics)
    # A new consumer group starts at the beginning of each topic so nothing retained is missed.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # Progress line in the log every this many seconds (0 disables it).
    log_interval_s: Annotated[float, Field(ge=0)] = 10.0
    # Before giving up partitions in a rebalance the sink tries to flush for this long; after
    # that the buffered rows are dropped and re-read by the new owner from the committed offsets.
    revoke_flush_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # CPython's default: every INSERT leaves clickhouse-driver column objects in reference
    # cycles that hold the batch's column data; a higher threshold keeps them (and ~60 MB) alive
    # longer for a 15 % cut in the sink's gc time (hangwatch.platform.gc_policy).
    gc_young_threshold: Annotated[int, Field(ge=100)] = 700
    # Consumer group session timeout; the broker moves a dead sink's partitions after this.
    session_timeout_s: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("topics")
    @classmethod
    def _known_tables(cls, v: dict[str, str]) -> dict[str, str]:
        expected = set(_default_sink_topics())
        if set(v) != expected:
            raise ValueError(f"sink.topics must map exactly these tables to topics: {sorted(expected)}")
        if len(set(v.values())) != len(v):
            raise ValueError("sink.topics: each table needs its own topic")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGWATCH_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    metrics_port: int | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The one time zone (IANA name) of everything people type and read: times without an offset
    # (CLI, simulator), every time shown (CLI, report, exports, dashboards), the compliance
    # rules' calendar days and quiet hours (part of the rules' version: RuleSet.fingerprint).
    # Storage and topics stay UTC. Replaces worker.timezone and the rules file's `timezone`.
    timezone: str = "Asia/Shanghai"
    # Language of the report, exports, flag and alert explanations, CLI headers and errors.
    language: Literal["zh-CN", "en"] = "zh-CN"
    # The glossary and display names (hangwatch/i18n/glossary.yaml) can be extended or overridden
    # by a bank's own YAML file of the same shape; its entries win.
    glossary_file: Path | None = None
    # A font file with CJK glyphs for the report's charts (default: Noto Sans CJK from the
    # fonts-noto-cjk package, then other common CJK fonts).
    font_file: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai or UTC") from None
        return v

    @model_validator(mode="after")
    def _one_timezone(self) -> Settings:
        """worker.timezone, the old setting, still works for a release: it warns and, when the
        new `timezone` is not set, gives it its value; then it mirrors the one zone."""
        old = self.worker.timezone
        if old and old != self.timezone:
            if "timezone" in self.model_fields_set:
                raise ValueError(f"worker.timezone ({old}) and timezone ({self.timezone}) differ; worker.timezone "
                                 "is deprecated: set only timezone (HANGWATCH_TIMEZONE)")
            self.timezone = self._known_zone(old)
        if old:
            warnings.warn("worker.timezone is deprecated: set timezone (HANGWATCH_TIMEZONE) instead", FutureWarning,
                          stacklevel=2)
        self.worker.timezone = self.timezone
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


class _YamlFileSource(PydanticBaseSettingsSource):
    """Settings from the YAML file named by HANGWATCH_CONFIG, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ is used instead

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("HANGWATCH_CONFIG")
        if not path:
            return {}
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"HANGWATCH_CONFIG points to {p}, which does not exist")
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a mapping of settings at the top level")
        return data


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; `config` (a YAML file) takes the place of HANGWATCH_CONFIG."""
    if config is not None:
        os.environ["HANGWATCH_CONFIG"] = str(config)
    return Settings(**overrides)

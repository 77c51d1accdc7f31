"""Security on real listeners: a Kafka broker that speaks SASL_SSL (SCRAM-SHA-512 over TLS) and
a ClickHouse 18.16 server with TLS on its secure native port, both started by this module
(tests.integration.secure_services) with certificates made at test time.

The topics command, migrations, the worker and the sink (real processes, configured through
the environment only) run against them and the stored rates equal the oracle's; plaintext,
a wrong password and a non-TLS ClickHouse connection are refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client
from pydantic import SecretStr

from hangwatch.platform.settings import KafkaSettings
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS
from hangwatch.simulator import SimConfig, generate, produce
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from testkit.oracles.rates import oracle_counts
from testkit.waits import wait_for
from tests.integration.secure_services import (
    CH_TLS_PORT,
    DATABASE,
    KAFKA_SASL_SSL_PORT,
    ROOT,
    SCRAM_PASSWORD,
    SCRAM_USER,
    SecureServices,
)
from tests.integration.test_worker_flags_alerts import yesterday_8am_ms

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
SIZES = (60, 300, 3600)
COUNTS = ("attempts", "connected", *OUTCOME_COUNT_FIELDS)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServices]:
    svc = SecureServices(tmp_path_factory.mktemp("secure"))
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


def hangwatch(svc: SecureServices, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hangwatch", *args], env=svc.hangwatch_env(**env), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def kafka_settings(svc: SecureServices, prefix: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=f"127.0.0.1:{KAFKA_SASL_SSL_PORT}", security_protocol="SASL_SSL",
                         sasl_mechanism="SCRAM-SHA-512", sasl_username=SCRAM_USER,
                         sasl_password=SecretStr(SCRAM_PASSWORD), ssl_cafile=svc.certs["ca"], topic_prefix=prefix)


def test_pipeline_over_sasl_ssl_and_tls(secure: SecureServices, tmp_path: Path) -> None:
    prefix, db = "sec.", DATABASE
    env = {"KAFKA__TOPIC_PREFIX": prefix}
    p = hangwatch(secure, "topics", "create", **env)
    assert p.returncode == 0, p.stderr
    p = hangwatch(secure, "migrate", **env)
    assert p.returncode == 0, p.stderr

    cfg = SimConfig(seed=7, rate=0.5, count=1500, start_ms=yesterday_8am_ms(days=3), borrowers=150)
    records = list(generate(cfg))
    asyncio.run(produce(records, kafka_settings(secure, prefix), prefix + "call-outcomes"))
    events = list({r.event.event_id: r.event for r in records if r.event is not None}.values())
    expected = {k: [v[f] for f in COUNTS] for k, v in oracle_counts(events, SIZES).items()}

    run_env = {**env, "WORKER__APP_ID": "hw-secure", "WORKER__IDLE_CLOSE_S": "2.0",
               "WORKER__BROKER_SESSION_TIMEOUT_S": "6.0", "WORKER__BROKER_HEARTBEAT_INTERVAL_S": "0.5",
               "SINK__GROUP_ID": "hw-secure-sink", "SINK__FLUSH_INTERVAL_S": "0.5"}
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("worker", "sink")}  # noqa: SIM115
    extra = {"worker": ["--data-dir", str(tmp_path / "worker-data")], "sink": []}
    procs = {name: subprocess.Popen([sys.executable, "-m", "hangwatch", name, *extra[name]],
                                    env=secure.hangwatch_env(**run_env), cwd=ROOT,
                                    stdout=logs[name], stderr=subprocess.STDOUT) for name in logs}
    backend = NativeBackend(parse_url(secure.ch_url))

    def alive() -> None:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     + (tmp_path / f"{name}.log").read_text(errors="replace")[-4000:])

    def stored_final_rates() -> dict[str, list[int]]:
        alive()
        res = backend.query(f"SELECT window_size_s, toUInt32(window_start), dimension, value, {', '.join(COUNTS)} "
                            f"FROM {db}.hangup_rates FINAL WHERE final = 1")
        return {f"{r[0]}|{r[1]}|{r[2]}|{r[3]}": list(r[4:]) for r in res.rows}

    def stored_events() -> int:
        alive()
        return int(backend.query(f"SELECT count() FROM {db}.call_events FINAL").scalar())

    try:
        wait_for(lambda: stored_events() == len(events), 90, "every event stored over TLS", every_s=1.0)
        wait_for(lambda: stored_final_rates() == expected, 90, "final rates equal to the oracle", every_s=1.0)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for f in logs.values():
            f.close()
        backend.close()


def test_plaintext_and_wrong_credentials_are_refused(secure: SecureServices) -> None:
    # Both checks at once: kafka-python reports a failed handshake only as a bootstrap timeout.
    started = time.monotonic()
    cmd = [sys.executable, "-m", "hangwatch", "topics", "create"]
    no_ca = secure.hangwatch_env()
    del no_ca["HANGWATCH_KAFKA__SSL_CAFILE"]
    runs = {
        "plaintext": subprocess.Popen(cmd, env=secure.hangwatch_env(KAFKA__SECURITY_PROTOCOL="PLAINTEXT"), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "wrong password": subprocess.Popen(cmd, env=secure.hangwatch_env(KAFKA__SASL_PASSWORD="wrong"), cwd=ROOT,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        # the CA is required: the broker's certificate is not trusted without it
        "unknown CA": subprocess.Popen(cmd, env=no_ca, cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    # ClickHouse: no plaintext on the TLS port, and no TLS without the CA.
    with pytest.raises(Exception):  # noqa: B017  (the driver's error differs by the point of failure)
        Client("127.0.0.1", port=CH_TLS_PORT, connect_timeout=3, send_receive_timeout=5).execute("SELECT 1")
    with pytest.raises(Exception):  # noqa: B017
        Client("127.0.0.1", port=CH_TLS_PORT, secure=True, verify=True, connect_timeout=3).execute("SELECT 1")
    assert Client("127.0.0.1", port=CH_TLS_PORT, secure=True, ca_certs=str(secure.certs["ca"]),
                  connect_timeout=3).execute("SELECT 1") == [(1,)]
    p = hangwatch(secure, "migrate", CLICKHOUSE__URL=f"clickhouse://default@127.0.0.1:{CH_TLS_PORT}/default",
                  timeout=30)
    assert_one_line_error(p)

    for name, proc in runs.items():
        out, err = proc.communicate(timeout=90)
        print(f"{name}: exit {proc.returncode}: {err.strip()}")
        assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert time.monotonic() - started < 60

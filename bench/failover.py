"""Failover: how long after a worker is killed (kill -9) and restarted does output resume?

One worker on live traffic (calls stamped now, --rate per second); after a warm-up it is killed
and started again at once, on the same data directory. Right after the restart, probe calls go
in: calls of a branch no other call has (their rate update proves the rates path runs again)
and three refusals of one new borrower (their flag proves the flags path runs again). Measured
from the restart (the new process's start) to the first arrival of each on its topic:
  to rate   the first hangup-rates record of the probe branch (a provisional window: finals
            wait for the grace period by design);
  to flag   the probe borrower's repeated_refusal flag on borrower-flags.
Run once with dynamic membership (a restarted worker waits until the broker drops the dead
member after the session timeout, then the group rebalances) and once with static membership
(worker.instance_id: the restarted member takes its partitions back at once), both with the
production session timeout (worker.broker_session_timeout_s, 60 s).

    python -m bench.failover [--rate 200] [--warmup-s 15] [--only static|dynamic]
Prints a table; writes bench/results/failover-<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from bench.env import BOOTSTRAP, ROOT, Proc, RunEnv, python_module
from hangwatch.schemas.topics import BORROWER_FLAGS, CALL_OUTCOMES, HANGUP_RATES

SESSION_TIMEOUT_S = 60
RESULTS = ROOT / "bench" / "results"


def call(branch: str, borrower: str, outcome: str) -> tuple[bytes, bytes]:
    """A valid CallOutcome v1 stamped now, and its key."""
    now = datetime.now(tz=UTC).isoformat(timespec="milliseconds")
    event = {"event_id": uuid.uuid4().hex, "schema_version": 1, "call_id": uuid.uuid4().hex,
             "borrower_id": borrower, "loan_id": f"loan-{borrower}", "occurred_at": now,
             "campaign": "post_loan_review", "channel": "robot", "branch": branch, "outcome": outcome,
             "duration_s": 12, "pre_notified": False}
    return borrower.encode(), orjson.dumps(event)


class Traffic(threading.Thread):
    """Live calls at `rate` per second until stopped."""

    def __init__(self, producer: KafkaProducer, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.producer, self.topic, self.rate = producer, topic, rate
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        t0 = time.monotonic()
        while not self.stop.is_set():
            key, value = call("bench-branch", f"b-{n % 5000}", ("completed", "hung_up", "no_answer")[n % 3])
            self.producer.send(self.topic, key=key, value=value)
            n += 1
            delay = t0 + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def first_arrival(consumer: KafkaConsumer, want: dict[str, Any], timeout_s: float) -> dict[str, float]:
    """Epoch seconds at which a record matching each predicate in `want` first arrived."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(want) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                for name, pred in want.items():
                    if name not in seen and pred(r):
                        seen[name] = time.time()
    return seen


def run_failover(static: bool, rate: float, warmup_s: float) -> dict[str, Any]:
    worker_env = {"HANGWATCH_WORKER__BROKER_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
                  "HANGWATCH_WORKER__BROKER_HEARTBEAT_INTERVAL_S": "3"}
    if static:
        worker_env["HANGWATCH_WORKER__INSTANCE_ID"] = "failover-w1"
    env = RunEnv(f"failover-{'static' if static else 'dynamic'}", worker_env=worker_env)
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    consumer = KafkaConsumer(env.topic(HANGUP_RATES), env.topic(BORROWER_FLAGS), bootstrap_servers=BOOTSTRAP,
                             auto_offset_reset="latest", enable_auto_commit=False, group_id=None)
    consumer.poll(timeout_ms=1000)  # assignment and start positions before anything is awaited
    traffic = Traffic(producer, env.topic(CALL_OUTCOMES), rate)
    argv = python_module("hangwatch", "worker")
    worker = Proc("worker", argv, env.env(), env.logs)
    try:
        traffic.start()
        warm = first_arrival(consumer, {"rates": lambda r: True}, 120)
        if "rates" not in warm:
            raise RuntimeError(f"no rate update within 120 s of the start; worker log:\n{worker.log_tail()}")
        time.sleep(warmup_s)
        worker.proc.kill()  # kill -9: no clean leave from the group
        worker.proc.wait(10)
        worker.stop()
        restarted = time.time()
        worker = Proc("worker-restarted", argv, env.env(), env.logs)
        probe_branch, probe_borrower = f"probe-{uuid.uuid4().hex[:6]}", f"probe-{uuid.uuid4().hex[:6]}"
        for _ in range(3):
            key, value = call(probe_branch, probe_borrower, "refused")
            producer.send(env.topic(CALL_OUTCOMES), key=key, value=value)
        producer.flush()
        rate_topic, flag_topic = env.topic(HANGUP_RATES), env.topic(BORROWER_FLAGS)
        seen = first_arrival(consumer, {
            "rate": lambda r: r.topic == rate_topic and f"|branch|{probe_branch}".encode() in (r.key or b""),
            "flag": lambda r: r.topic == flag_topic and r.key == probe_borrower.encode(),
        }, timeout_s=SESSION_TIMEOUT_S + 90)
        worker.assert_alive()
        return {"membership": "static" if static else "dynamic", "session_timeout_s": SESSION_TIMEOUT_S,
                "rate_per_s": rate, "restart_to_rate_s": _since(seen.get("rate"), restarted),
                "restart_to_flag_s": _since(seen.get("flag"), restarted)}
    finally:
        traffic.stop.set()
        traffic.join(5)
        worker.stop()
        producer.close()
        consumer.close()
        env.cleanup()


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="live calls per second (default 200)")
    ap.add_argument("--warmup-s", type=float, default=15.0, help="seconds of traffic before the kill (default 15)")
    ap.add_argument("--only", choices=("static", "dynamic"), help="one membership mode only")
    a = ap.parse_args()
    modes = [a.only == "static"] if a.only else [False, True]
    rows = [run_failover(static, a.rate, a.warmup_s) for static in modes]
    print(f"{'membership':<11}{'session timeout':>16}{'restart -> rate':>17}{'restart -> flag':>17}")
    for r in rows:
        print(f"{r['membership']:<11}{r['session_timeout_s']:>14} s{_fmt(r['restart_to_rate_s']):>17}"
              f"{_fmt(r['restart_to_flag_s']):>17}")
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"failover-{stamp}.json"
    out.write_text(json.dumps({"started": stamp, "runs": rows}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def _fmt(v: float | None) -> str:
    return "not seen" if v is None else f"{v:.1f} s"


if __name__ == "__main__":
    main()

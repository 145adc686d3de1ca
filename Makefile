# The project's commands. `make dev` runs the whole stack locally; `make test` runs every gate.
SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0

# Deployment environment of samconfig.toml (default, dev, prod) and its stack name.
ENV ?= default
STACK = $(if $(filter default,$(ENV)),demand-forecast,demand-forecast-$(ENV))
MODEL_DIR ?= data/models/demand

PARITY_VENV := .local/parity-venv
PARITY_ROUNDS ?= 3000

# make bench: a 3000-round model on the full generated data, measured BENCH_REPEATS times.
BENCH_VENV := .local/bench-venv
BENCH_MODEL_DIR ?= .local/bench-model
BENCH_ROUNDS ?= 3000
BENCH_TRAIN_ROUNDS ?= 3000
BENCH_REPEATS ?= 3

# Architecture of the functions under `sam local` (make sam-local, the sam local test): arm64,
# what deploys, runs under qemu-user on other CPUs; x86_64 runs natively on x86_64 hosts.
SAM_LOCAL_ARCH ?= arm64
export SAM_LOCAL_ARCH
# SAM and cfn-lint do not look inside a state machine definition; asl-validator does.
ASL_VALIDATOR := .local/node/node_modules/.bin/asl-validator
STATE_MACHINES := statemachine/batch.asl.json

# The native evaluator's LightGBM oracle cases (exported by the trainer's oracle suite) replayed
# on aarch64 under qemu-user: LightGBM is not built for aarch64 here, the evaluator is.
ORACLE_DIR := target/tmp/oracle
AARCH64_REPLAY = CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu" \
	GBDT_ORACLE_DIR=$(CURDIR)/$(ORACLE_DIR) \
	cargo test --release --locked -p forecast --target aarch64-unknown-linux-gnu \
	--test oracle_cases -- --ignored --nocapture

FUZZ_SECONDS ?= 60
FUZZ_HTTP_EXAMPLES ?= 800

.PHONY: help deps dev sam-local test fmt lint unit e2e bench parity validate build deploy publish-model smoke clean \
	test-aarch64 test-faults test-load test-fuzz-http test-sam-local fuzz deny bench-model bench-batch

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

deps: ## install what is missing (cargo-lambda, cmake, clang, moto, sam, docker.io, qemu)
	@infra/local/deps.sh
	@infra/local/sam-deps.sh $(SAM_LOCAL_ARCH)

dev: deps ## run the whole stack on 127.0.0.1 until Ctrl-C
	@infra/local/stack.sh

sam-local: deps ## the stack under sam local (Docker) on 127.0.0.1:3000 until Ctrl-C
	@infra/local/sam-local.sh

test: deps ## every gate: fmt, clippy, sam lint, doc links, unit and end-to-end tests
	cargo fmt --all --check
	python3 tests/docs/links.py
	cargo clippy --workspace --all-targets --locked -- -D warnings
	sam validate --lint
	$(ASL_VALIDATOR) --json-path $(STATE_MACHINES)
	cargo deny check licenses bans sources
	cargo build --workspace --bins --locked
	rm -rf $(ORACLE_DIR)
	GBDT_ORACLE_EXPORT=$(CURDIR)/$(ORACLE_DIR) cargo test --workspace --locked
	$(AARCH64_REPLAY)
	@echo "make test: all gates passed"

deny: deps ## licences, banned crates and sources of every dependency (deny.toml)
	cargo deny check licenses bans sources

test-aarch64: deps ## the evaluator against LightGBM's answers on aarch64, under qemu-user
	rm -rf $(ORACLE_DIR)
	GBDT_ORACLE_EXPORT=$(CURDIR)/$(ORACLE_DIR) cargo test -p trainer --locked --test native_evaluator
	$(AARCH64_REPLAY)

test-faults: deps ## cold-start and serving faults through the local stack, each healing
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked --test faults -- --nocapture

test-load: deps ## 10,000 requests at 16 clients via the local stack: answers, RSS per request
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked --test load -- --nocapture

test-fuzz-http: deps ## schemathesis from the served OpenAPI document, >= 2,000 requests
	cargo build --workspace --bins --locked
	FUZZ_HTTP_EXAMPLES=$(FUZZ_HTTP_EXAMPLES) FUZZ_HTTP_MIN_REQUESTS=2000 \
		cargo test -p e2e --locked --test http_fuzz -- --nocapture

test-sam-local: deps ## sam local start-api / invoke vs the cargo lambda stack, bit for bit
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked --test sam_local -- --nocapture

fuzz: ## cargo fuzz (nightly) on request and payload decoding, FUZZ_SECONDS each; not in CI
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
	for target in orchestrator_request model_payload; do \
		mkdir -p fuzz/corpus/$$target fuzz/regressions/$$target && \
		cargo +nightly fuzz run -O $$target fuzz/corpus/$$target fuzz/seeds/$$target \
			fuzz/regressions/$$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fmt: ## format the code
	cargo fmt --all

lint: deps ## fmt check, clippy, sam validate --lint, the state machine definition, doc links
	cargo fmt --all --check
	python3 tests/docs/links.py
	cargo clippy --workspace --all-targets --locked -- -D warnings
	sam validate --lint
	$(ASL_VALIDATOR) --json-path $(STATE_MACHINES)

unit: ## unit tests only (no local stack)
	cargo test --workspace --locked --exclude e2e

e2e: deps ## end-to-end tests only (starts and stops the local stack itself)
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked

bench: deps ## everything side by side with the Python stack (FastAPI + MLflow) -> BENCHMARKS.md
	bench/peer/setup.sh >/dev/null
	command -v oha >/dev/null 2>&1 || cargo install --locked oha
	cargo build --release --locked --workspace --bins
	test -f data/generated/train.csv || target/release/demand generate --out data/generated
	test -f $(BENCH_MODEL_DIR)/model.txt || target/release/demand train \
		--data data/generated/train.csv --split none --rounds $(BENCH_ROUNDS) --out $(BENCH_MODEL_DIR)
	MODEL_BENCH_MODEL_DIR=$(abspath $(BENCH_MODEL_DIR)) cargo bench --locked -p model --bench handler
	$(BENCH_VENV)/bin/python bench/run.py --model-bin target/release/model \
		--orchestrator-bin target/release/orchestrator --demand-bin target/release/demand \
		--model-dir $(BENCH_MODEL_DIR) --train-rounds $(BENCH_TRAIN_ROUNDS) \
		--repeats $(BENCH_REPEATS) --oha "$$(command -v oha)" --out BENCHMARKS.md

bench-batch: deps ## batch forecasts: rows/s end to end at 1, 2 and 4 workers (BATCH_BENCH_ROUNDS trees)
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked --test batch -- --ignored --nocapture

bench-model: ## criterion only: the model handler vs raw LightGBM (1, 100, 10,000 rows)
	cargo bench --locked -p model --bench handler

parity: ## demand train vs the Python lightgbm package: same data, params, threads, time split
	python3 -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/pip install --quiet --disable-pip-version-check lightgbm==4.7.0 pandas
	cargo build --release --locked -p trainer
	test -f data/generated/train.csv || target/release/demand generate --out data/generated
	$(PARITY_VENV)/bin/python tests/parity/parity.py --demand target/release/demand \
		--data data/generated/train.csv --cutoff 2017-10-01 --threads 1 --rounds $(PARITY_ROUNDS) --repeats 3

validate: deps ## sam validate --lint and the state machine definition (asl-validator)
	sam validate --lint
	$(ASL_VALIDATOR) --json-path $(STATE_MACHINES)

build: deps ## sam build (cargo lambda, arm64) into .aws-sam/
	# Not SAM's cache: it hashes each function's own directory, so a change in a shared crate
	# (functions/forecast) would ship a stale build; cargo's own no-op build takes seconds.
	sam build --beta-features --no-cached --config-env $(ENV)
	@ls -l .aws-sam/build/ModelFunction/bootstrap .aws-sam/build/OrchestratorFunction/bootstrap

# Both functions deploy through their `live` alias: a changed function gets a canary
# (DeploymentType in samconfig.toml) that the stack's alarms roll back; sam deploy waits for it.
deploy: build ## deploy the stack of ENV (guided the first time); canary through the live aliases
	@infra/aws/has-credentials.sh || { echo "deploy: no AWS credentials configured" >&2; exit 1; }
	@if infra/aws/stack-output.sh $(STACK) ApiUrl >/dev/null 2>&1; then \
		sam deploy --config-env $(ENV); \
	else \
		sam deploy --guided --config-env $(ENV); \
	fi

publish-model: ## publish MODEL_DIR to the bucket of the deployed stack of ENV
	@infra/aws/has-credentials.sh || { echo "publish-model: no AWS credentials configured" >&2; exit 1; }
	bucket=$$(infra/aws/stack-output.sh $(STACK) ModelBucketName) && \
		cargo run --release -p trainer -- publish --model-dir $(MODEL_DIR) --bucket "$$bucket"
	@echo "serve it: set ModelVersion=$$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' $(MODEL_DIR)/manifest.json) for [$(ENV)] in samconfig.toml, then make deploy ENV=$(ENV) (a canary on the model's live alias, rolled back by the alarms)"

smoke: ## call the deployed API of ENV (skips without AWS credentials)
	@infra/aws/smoke.sh $(STACK)

clean: ## remove build output and generated data
	cargo clean
	rm -rf .aws-sam .local data/generated data/models

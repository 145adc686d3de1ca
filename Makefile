# The project's commands. `make dev` runs the whole stack locally; `make test` runs every gate.
SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
# zig's libc++ headers break bindgen unless libc++ assertions are configured explicitly.
export BINDGEN_EXTRA_CLANG_ARGS := -D_LIBCPP_ASSERTION_SEMANTIC_DEFAULT=_LIBCPP_ASSERTION_SEMANTIC_IGNORE

.PHONY: help deps dev test fmt lint unit e2e validate build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

deps: ## install what is missing (cargo-lambda, cmake, clang, moto, sam)
	@infra/local/deps.sh

dev: deps ## run the whole stack on 127.0.0.1 until Ctrl-C
	@infra/local/stack.sh

test: deps ## every gate: fmt, clippy, sam lint, unit and end-to-end tests
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	sam validate --lint
	cargo build --workspace --bins --locked
	cargo test --workspace --locked

fmt: ## format the code
	cargo fmt --all

lint: deps ## fmt check, clippy and sam validate --lint only
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	sam validate --lint

unit: ## unit tests only (no local stack)
	cargo test --workspace --locked --exclude e2e

e2e: deps ## end-to-end tests only (starts and stops the local stack itself)
	cargo build --workspace --bins --locked
	cargo test -p e2e --locked

validate: deps ## sam validate --lint
	sam validate --lint

build: deps ## sam build (cargo lambda, arm64) into .aws-sam/
	sam build --beta-features

clean: ## remove build output and generated data
	cargo clean
	rm -rf .aws-sam .local data/generated data/models

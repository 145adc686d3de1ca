#!/usr/bin/env bash
# Installs what the local stack and the tests need, when it is missing:
# rustfmt + clippy, CMake >= 3.28, clang + libclang, cargo-lambda (with zig), moto server,
# AWS SAM CLI, cfn-lint, cargo-deny, schemathesis, Python lightgbm (the parity gate), and for
# the aarch64 replay a cross linker and qemu-user. As root it installs with apt-get / pip;
# otherwise it prints the exact commands to run and fails.
set -euo pipefail

missing=()
say() { printf '==> %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

PYTHON=${PYTHON:-python3}
pip_install() {
    say "pip install $*"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@"
    if have pyenv; then pyenv rehash; fi
}

version_at_least() { # version_at_least HAVE WANT
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# Rust components used by the quality gates.
if have rustup; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" \
            || rustup component add "$component"
    done
fi

# clang + libclang (bindgen in lightgbm3-sys).
libclang_present() { ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*/libclang*.so* >/dev/null 2>&1; }
if ! have clang || ! libclang_present; then
    if is_root && have apt-get; then
        say "apt-get install clang libclang-dev"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-dev >/dev/null
    else
        missing+=("sudo apt-get install -y clang libclang-dev")
    fi
fi

# The evaluator's aarch64 replay (make test-aarch64): Rust's aarch64 target, a cross linker
# with aarch64 glibc, and qemu-user to run the result.
if have rustup && ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
    rustup target add aarch64-unknown-linux-gnu
fi
if ! have aarch64-linux-gnu-gcc || ! have qemu-aarch64-static; then
    if is_root && have apt-get; then
        say "apt-get install gcc-aarch64-linux-gnu qemu-user-static"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user-static >/dev/null
    else
        missing+=("sudo apt-get install -y gcc-aarch64-linux-gnu qemu-user-static")
    fi
fi

if ! have "$PYTHON" || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    missing+=("install Python 3 with pip (python3 -m pip must work)")
else
    # CMake >= 3.28 (lightgbm3-sys builds LightGBM with it; Debian's is older).
    cmake_version=$( (cmake --version 2>/dev/null || true) | awk 'NR==1 {print $3}')
    if [ -z "$cmake_version" ] || ! version_at_least "$cmake_version" 3.28; then
        pip_install "cmake>=3.28"
    fi
    if ! cargo lambda --version >/dev/null 2>&1; then pip_install cargo-lambda; fi
    if ! have moto_server; then pip_install "moto[server]"; fi
    if ! have sam; then pip_install aws-sam-cli; fi
    if ! have cfn-lint; then pip_install cfn-lint; fi
fi

# Test tools: cargo-deny (licence/source gate) and schemathesis (HTTP fuzzing, own venv).
if ! cargo deny --version >/dev/null 2>&1; then
    say "cargo install cargo-deny"
    cargo install --quiet --locked cargo-deny
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_VENV="$ROOT/.local/fuzz-venv"
SCHEMATHESIS_VERSION=4.32.5
if ! "$FUZZ_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    say "schemathesis $SCHEMATHESIS_VERSION into $FUZZ_VENV"
    "$PYTHON" -m venv "$FUZZ_VENV"
    "$FUZZ_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Python LightGBM, the version lightgbm3-sys vendors, for the parity gate (tests/tests/parity.rs;
# `make parity` adds pandas for its timed full-size run).
PARITY_VENV="$ROOT/.local/parity-venv"
LIGHTGBM_VERSION=4.7.0
if ! "$PARITY_VENV/bin/python" -c "import lightgbm, sys; sys.exit(lightgbm.__version__ != '$LIGHTGBM_VERSION')" 2>/dev/null; then
    say "lightgbm $LIGHTGBM_VERSION into $PARITY_VENV"
    "$PYTHON" -m venv "$PARITY_VENV"
    "$PARITY_VENV/bin/pip" install --quiet --disable-pip-version-check "lightgbm==$LIGHTGBM_VERSION"
fi

# asl-validator: SAM and cfn-lint do not validate a state machine's definition (ASL).
ASL_VALIDATOR_VERSION=3.16.0
ASL_PREFIX="$ROOT/.local/node"
if ! "$ASL_PREFIX/node_modules/.bin/asl-validator" --version 2>/dev/null | grep -q "$ASL_VALIDATOR_VERSION"; then
    if have npm; then
        say "npm install asl-validator@$ASL_VALIDATOR_VERSION into $ASL_PREFIX"
        mkdir -p "$ASL_PREFIX"
        npm install --prefix "$ASL_PREFIX" --no-audit --no-fund --silent "asl-validator@$ASL_VALIDATOR_VERSION"
    else
        missing+=("install Node.js with npm (asl-validator validates statemachine/*.asl.json)")
    fi
fi

hash -r
for tool in cmake clang moto_server sam cfn-lint; do
    have "$tool" || missing+=("$tool is still not on PATH")
done
cargo lambda --version >/dev/null 2>&1 || missing+=("cargo lambda is still not available")

if [ "${#missing[@]}" -gt 0 ]; then
    say "missing prerequisites:"
    printf '    %s\n' "${missing[@]}" >&2
    exit 1
fi
say "prerequisites present: $(cmake --version | head -n1), $(cargo lambda --version), $(sam --version)"

#!/usr/bin/env bash
# `sam build` of both functions for `sam local`, into a build directory of that architecture's
# own, so a local x86_64 build never ends up in what `make build` deploys.
# cargo lambda shares the workspace's target/, so an arm64 build here is reused by `make build`.
# Usage: sam-build.sh ARCH BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: sam-build.sh arm64|x86_64 BUILD_DIR}
BUILD_DIR=${2:?usage: sam-build.sh arm64|x86_64 BUILD_DIR}
export SAM_CLI_TELEMETRY=0

# Not --cached: SAM's cache hashes each function's own directory only, so a change in a shared
# workspace crate (functions/forecast) would not rebuild; cargo's own no-op build takes seconds.
exec sam build --beta-features --no-cached --build-dir "$BUILD_DIR" \
    --parameter-overrides "Architecture=$ARCH"

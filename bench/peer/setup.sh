#!/usr/bin/env bash
# Creates .local/bench-venv with bench/peer/requirements.txt. Idempotent: a stamp holding the
# requirements' hash skips pip when nothing changed. Prints the venv path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.local/bench-venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

want=$( { sha256sum "$req"; python3 --version; } | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$venv"; exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv"

#!/usr/bin/env bash
# stack-output.sh STACK KEY: prints one output of a deployed stack (needs AWS credentials).
set -euo pipefail
stack=$1 key=$2
sam list stack-outputs --stack-name "$stack" --output json \
    | python3 -c 'import json, sys
key = sys.argv[1]
values = [o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"] == key]
if not values:
    sys.exit(f"stack has no output {key}")
print(values[0])' "$key"

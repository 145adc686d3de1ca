#!/usr/bin/env bash
# Exits 0 when the standard AWS credential chain resolves credentials, 1 otherwise.
python3 -c 'import sys, boto3; sys.exit(0 if boto3.Session().get_credentials() else 1)' 2>/dev/null

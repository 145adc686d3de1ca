"""The pieces `bench/run.py` is made of: processes, the Lambda runtime emulator, HTTP client,
payloads, load generator and report formatting."""

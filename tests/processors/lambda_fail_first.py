"""Test child for test_stall: a lambda handler that fails the first record
of every batch (batchItemFailures), so every record's retry budget runs
out and it goes to on_failure; nothing is ever handled."""
import json
import sys

for line in sys.stdin:
    records = json.loads(line)["Records"]
    first = records[0]["kinesis"]["sequenceNumber"]
    print(json.dumps({"batchItemFailures": [{"itemIdentifier": first}]}),
          flush=True)

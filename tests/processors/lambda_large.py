"""Test child for records of any size (tests/integration/test_large_e2e.c).

Reads one Kinesis event per stdin line (a 10 MiB record makes a line of
about 14 MiB) and appends, for each record, one line to the file named by
its first argument: "<sequenceNumber> <bytes> <sha256 hex>" of the decoded data.
A record whose data starts with b"poison" is reported in batchItemFailures
(a record failure: retried, then dead-lettered) and not written.
Exits at EOF on stdin."""
import base64
import hashlib
import json
import sys

out = sys.argv[1]
for line in sys.stdin:
    failures = []
    with open(out, "a") as f:
        for r in json.loads(line)["Records"]:
            k = r["kinesis"]
            data = base64.b64decode(k["data"])
            if data.startswith(b"poison"):
                failures.append({"itemIdentifier": k["sequenceNumber"]})
                continue
            f.write("%s %d %s\n" % (k["sequenceNumber"], len(data),
                                    hashlib.sha256(data).hexdigest()))
    sys.stdout.write(json.dumps({"batchItemFailures": failures}) + "\n")
    sys.stdout.flush()

"""Test child for records of any size (tests/integration/test_large_e2e.c).

    large_records.py OUT [multilang]

Reads one message per stdin line (a 10 MiB record makes a line of about
14 MiB) and appends, for each record, one line to the file OUT:
"<sequenceNumber> <bytes> <sha256 hex>" of the decoded data.

As a lambda child (the default) a line is a Kinesis event; a record whose
data starts with b"poison" is reported in batchItemFailures (a record
failure: retried, then dead-lettered) and not written.  As a KCL multilang
record processor (multilang) it answers every message with its status.
Exits at EOF on stdin."""
import base64
import hashlib
import json
import sys

out = sys.argv[1]
multilang = len(sys.argv) > 2 and sys.argv[2] == "multilang"


def note(f, seq, data):
    f.write("%s %d %s\n" % (seq, len(data), hashlib.sha256(data).hexdigest()))


def lambda_answer(event):
    failures = []
    with open(out, "a") as f:
        for r in event["Records"]:
            k = r["kinesis"]
            data = base64.b64decode(k["data"])
            if data.startswith(b"poison"):
                failures.append({"itemIdentifier": k["sequenceNumber"]})
            else:
                note(f, k["sequenceNumber"], data)
    return {"batchItemFailures": failures}


def multilang_answer(msg):
    if msg["action"] == "processRecords":
        with open(out, "a") as f:
            for r in msg["records"]:
                note(f, r["sequenceNumber"], base64.b64decode(r["data"]))
    return {"action": "status", "responseFor": msg["action"]}


for line in sys.stdin:
    msg = json.loads(line)
    answer = multilang_answer(msg) if multilang else lambda_answer(msg)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()

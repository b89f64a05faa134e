#!/usr/bin/env python3
"""The minimal processor of docs/handlers.md (multilang section), verbatim:
the tests run it so the documented example stays right."""
import base64, json, sys

def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()

def checkpoint(seq=None, sub=None):
    send({"action": "checkpoint", "sequenceNumber": seq,
          "subSequenceNumber": sub})
    answer = json.loads(sys.stdin.readline())
    if answer.get("error"):
        print("checkpoint failed: " + answer["error"], file=sys.stderr)

for line in sys.stdin:
    msg = json.loads(line)
    action = msg["action"]
    if action == "processRecords":
        for r in msg["records"]:
            data = base64.b64decode(r["data"])
            print(r["partitionKey"], len(data), file=sys.stderr)
        checkpoint()              # the end of this batch
    elif action in ("shardEnded", "shutdownRequested"):
        checkpoint()
    send({"action": "status", "responseFor": action})

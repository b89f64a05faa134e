"""The chaos run's lambda function (tests/chaos/chaos.c), started through a
wrapper that refuses to start while the flag file argv[1] exists.

Each record whose data is JSON is handled: its Lambda event record is
appended as one JSON line to the file argv[2], flushed before the answer.
A record whose data is not JSON is a poison record (the producer marks
them so): the function stops there and reports it in batchItemFailures,
so kcld retries from it, bisects, and dead-letters it once its retries are
used up.  Between batches (after an answer, or idle for 100 ms), while
argv[1] exists, the function exits before it reads another batch: the
wrapper then fails to start it again until the flag is gone (an
infrastructure failure, never the records')."""
import base64
import json
import os
import select
import sys

flag, path = sys.argv[1], sys.argv[2]
with open(path, "a") as out:
    while True:
        # kcld writes one batch at a time (concurrency 1) and only after
        # the answer to the last, so nothing is buffered here while idle.
        while not select.select([sys.stdin], [], [], 0.1)[0]:
            if os.path.exists(flag):
                sys.exit(0)
        line = sys.stdin.readline()
        if not line:
            break
        failures = []
        for r in json.loads(line)["Records"]:
            try:
                json.loads(base64.b64decode(r["kinesis"]["data"]))
            except ValueError:
                failures.append(
                    {"itemIdentifier": r["kinesis"]["sequenceNumber"]})
                break
            out.write(json.dumps(r) + "\n")
        out.flush()
        print(json.dumps({"batchItemFailures": failures}), flush=True)

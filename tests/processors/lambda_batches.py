"""Test child for test_signals: for each batch it appends
"BATCH <pid> <count> <data>,<data>,...", once handled, to the file named by
argv[1].  A batch with a record whose data starts with "slow" first appends
"BEGIN <pid>" and takes 2 s: a handler busy while kcld gets a signal."""
import base64
import json
import os
import sys
import time

with open(sys.argv[1], "a") as out:
    for line in sys.stdin:
        records = json.loads(line)["Records"]
        data = [base64.b64decode(r["kinesis"]["data"]).decode()
                for r in records]
        if any(d.startswith("slow") for d in data):
            out.write("BEGIN %d\n" % os.getpid())
            out.flush()
            time.sleep(2)
        out.write("BATCH %d %d %s\n" % (os.getpid(), len(data),
                                        ",".join(data)))
        out.flush()
        print(json.dumps({"batchItemFailures": []}), flush=True)

"""Test child for the end-to-end lambda test: appends one line per record
it handled, "<shardId> <sequenceNumber> <data>", to the file named by
argv[1]; a record whose data starts with "flaky" is reported in
batchItemFailures the first time this child sees it (and logged to the
file as "FAILED <shardId> <sequenceNumber>"), so kcld must retry from it.
Each event line as received is appended to the file named by argv[2],
when one is given."""
import base64
import json
import os
import sys

seen = set()
events_path = sys.argv[2] if len(sys.argv) > 2 else os.devnull
with open(sys.argv[1], "a") as out, open(events_path, "a") as events:
    for line in sys.stdin:
        events.write(line)
        events.flush()
        failures = []
        done = []
        for r in json.loads(line)["Records"]:
            k = r["kinesis"]
            shard = r["eventID"].split(":")[0]
            data = base64.b64decode(k["data"]).decode()
            if data.startswith("flaky") and k["sequenceNumber"] not in seen:
                seen.add(k["sequenceNumber"])
                failures.append({"itemIdentifier": k["sequenceNumber"]})
                out.write("FAILED %s %s\n" % (shard, k["sequenceNumber"]))
                break  # later records are retried anyway
            done.append("%s %s %s\n" % (shard, k["sequenceNumber"], data))
        out.writelines(done)
        out.flush()
        print(json.dumps({"batchItemFailures": failures}), flush=True)

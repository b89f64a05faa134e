"""Test child for the tumbling-window tests (window.tumbling, lambda
handler): counts the records of each window in the window's state,
{"count": N}, as Lambda's documentation example aggregates.  For each event
it appends one JSON line to the file named by argv[1]:
  {"start", "end" (epoch s), "final", "early", "in" (the count it got),
   "n" (records), "state_bytes", "shard", "arn", "inside" (every record's
   arrival lies in [start, end)), "keys" (the event's top-level keys)}
and the event itself to the file named by argv[2] (when given and not
"-").  argv[3] "big:N": the first call of this process that starts a
window answers a state padded to N bytes (to pass Lambda's 1 MiB)."""
import calendar
import json
import os
import sys
import time

out_path = sys.argv[1]
events_path = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" \
    else os.devnull
mode = sys.argv[3] if len(sys.argv) > 3 else ""
pad = int(mode[4:]) if mode.startswith("big:") else 0


def epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


with open(out_path, "a") as out, open(events_path, "a") as events:
    for line in sys.stdin:
        events.write(line)
        events.flush()
        ev = json.loads(line)
        start = epoch(ev["window"]["start"])
        end = epoch(ev["window"]["end"])
        got = ev["state"].get("count", 0)
        recs = ev["Records"]
        inside = all(start <= r["kinesis"]["approximateArrivalTimestamp"] < end
                     for r in recs)
        out.write(json.dumps({
            "start": start, "end": end,
            "final": ev["isFinalInvokeForWindow"],
            "early": ev["isWindowTerminatedEarly"],
            "in": got, "n": len(recs),
            "state_bytes": len(json.dumps(ev["state"])),
            "shard": ev["shardId"], "arn": ev["eventSourceARN"],
            "inside": inside, "keys": sorted(ev.keys())}) + "\n")
        out.flush()
        state = {"count": got + len(recs)}
        if pad and not ev["state"] and not ev["isFinalInvokeForWindow"]:
            state["pad"] = "x" * pad
            pad = 0
        print(json.dumps({"state": state, "batchItemFailures": []}),
              flush=True)

"""Test child for the lambda handler (tests/integration/test_lambda.c).

Reads one Kinesis event per stdin line, checks that every record has the
shape Lambda passes (else answers an error "BadEvent"), and answers from the
decoded payloads of the batch, first match wins:
  "crash"        exit(3) without answering
  "garbage"      print a line that is not JSON
  "hang"         sleep forever
  "error"        {"errorMessage":"boom","errorType":"ValueError"}
  "env"          {"errorMessage":$KCLD_HANDLER_TIMEOUT_MS,"errorType":"Env"}
  "null"         null
  "slow"         sleep 0.4 s, then {}
  "stderr"       a line on stderr, then {}
  "bad..."       batchItemFailures naming each such record
  "split"        {} written in two pieces, 0.1 s apart
  "chatty"       {}, then 0.1 s later a line with no batch pending
  "blurt"        {} and a line with no batch pending in one write
  "last"         {}, then exit(0) at once
  otherwise      {}
Exits at EOF on stdin."""
import base64
import json
import os
import sys
import time

KINESIS_KEYS = {"kinesisSchemaVersion", "partitionKey", "sequenceNumber",
                "data", "approximateArrivalTimestamp"}
RECORD_KEYS = {"kinesis", "eventSource", "eventVersion", "eventID",
               "eventName", "invokeIdentityArn", "awsRegion",
               "eventSourceARN"}


def shape_error(event):
    for r in event["Records"]:
        if set(r) != RECORD_KEYS or set(r["kinesis"]) != KINESIS_KEYS:
            return "keys %s / %s" % (sorted(r), sorted(r["kinesis"]))
        k = r["kinesis"]
        if r["eventID"] != "shardId-000000000001:" + k["sequenceNumber"]:
            return "eventID " + r["eventID"]
        if r["eventSource"] != "aws:kinesis" or r["awsRegion"] != "us-east-1":
            return "source/region"
        if not isinstance(k["approximateArrivalTimestamp"], float):
            return "arrival"
    return None


def answer(event):
    err = shape_error(event)
    if err:
        return {"errorMessage": err, "errorType": "BadEvent"}
    payloads = [(r["kinesis"]["sequenceNumber"],
                 base64.b64decode(r["kinesis"]["data"]).decode())
                for r in event["Records"]]
    datas = [p for _, p in payloads]
    if "crash" in datas:
        sys.exit(3)
    if "garbage" in datas:
        return "GARBAGE"
    if "hang" in datas:
        time.sleep(3600)
    if "error" in datas:
        return {"errorMessage": "boom", "errorType": "ValueError"}
    if "env" in datas:
        return {"errorMessage": os.environ.get("KCLD_HANDLER_TIMEOUT_MS", "-"),
                "errorType": "Env"}
    if "null" in datas:
        return None
    if "slow" in datas:
        time.sleep(0.4)
    if "stderr" in datas:
        sys.stderr.write("hello from the child\n")
        sys.stderr.flush()
    bad = [{"itemIdentifier": s} for s, p in payloads if p.startswith("bad")]
    return {"batchItemFailures": bad} if bad else {}


for line in sys.stdin:
    datas = [base64.b64decode(r["kinesis"]["data"]).decode()
             for r in json.loads(line)["Records"]]
    if "split" in datas:
        sys.stdout.write('{"batchItem')
        sys.stdout.flush()
        time.sleep(0.1)
        sys.stdout.write('Failures": []}\n')
        sys.stdout.flush()
        continue
    if "chatty" in datas:
        sys.stdout.write("{}\n")
        sys.stdout.flush()
        time.sleep(0.1)
        sys.stdout.write("done with that batch\n")
        sys.stdout.flush()
        continue
    if "blurt" in datas:
        sys.stdout.write("{}\nand one more thing\n")
        sys.stdout.flush()
        continue
    if "last" in datas:
        sys.stdout.write("{}\n")
        sys.stdout.flush()
        os._exit(0)
    a = answer(json.loads(line))
    sys.stdout.write(("this is not json" if a == "GARBAGE" else json.dumps(a))
                     + "\n")
    sys.stdout.flush()

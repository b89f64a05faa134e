#!/usr/bin/env python3
"""make-seeds.py - writes the hand-made seed corpus under corpus/<target>/.

Run from anywhere: python3 tests/fuzz/make-seeds.py.  The seeds are small
inputs that reach each parser's main paths (valid inputs of every shape and
a few typical refusals); libFuzzer mutates from there.  Inputs kept because
they once crashed a parser (crash-<what>) are added by hand, not here."""
import base64
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- a tiny protobuf encoder for KPL aggregates ----
def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def tag(num, wt):
    return varint((num << 3) | wt)


def pb_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return tag(num, 2) + varint(len(b)) + b


def pb_uint(num, v):
    return tag(num, 0) + varint(v)


def record(pk, data, ehk=None, tags=()):
    r = pb_uint(1, pk)
    if ehk is not None:
        r += pb_uint(2, ehk)
    r += pb_bytes(3, data)
    for k, v in tags:
        r += pb_bytes(4, pb_bytes(1, k) + pb_bytes(2, v))
    return pb_bytes(3, r)


def aggregate_pb(pks, ehks, recs, extra=b""):
    pb = b"".join(pb_bytes(1, k) for k in pks)
    pb += b"".join(pb_bytes(2, k) for k in ehks)
    return pb + b"".join(recs) + extra


def wrap(pb):
    return MAGIC + pb + hashlib.md5(pb).digest()


AGG_SIMPLE = aggregate_pb(["pk-a"], [], [record(0, "hello"),
                                         record(0, "world")])
AGG_FULL = aggregate_pb(
    ["alpha", "beta", "\u00e9t\u00e9"],
    ["340282366920938463463374607431768211455", "0"],
    [record(0, "one", 0), record(1, "two", 1, [("t", "v")]),
     record(2, b"\x00\x01\x02", None), record(1, "")])
# Unknown fields of each accepted wire type (0, 1, 2, 5) at the top level.
AGG_UNKNOWN = aggregate_pb(
    ["k"], [], [record(0, "x")],
    pb_uint(9, 7) + tag(10, 1) + b"\0" * 8 + pb_bytes(11, "skip") +
    tag(12, 5) + b"\0" * 4)


def deagg_seeds():
    t = "fuzz_deagg"
    # Mode byte 1: the target adds the magic and the MD5 trailer.
    write(t, "wrapped-simple", b"\x01" + AGG_SIMPLE)
    write(t, "wrapped-full", b"\x01" + AGG_FULL)
    write(t, "wrapped-unknown-fields", b"\x01" + AGG_UNKNOWN)
    write(t, "wrapped-empty", b"\x01")
    write(t, "wrapped-bad-index", b"\x01" +
          aggregate_pb(["k"], [], [record(3, "x")]))
    write(t, "wrapped-group", b"\x01" + AGG_SIMPLE + tag(5, 3))
    write(t, "wrapped-long-varint", b"\x01" + pb_bytes(1, "k") +
          tag(3, 2) + b"\xff" * 11)
    # Mode byte 0: the bytes as they come in a Kinesis record.
    write(t, "raw-aggregate", b"\x00" + wrap(AGG_FULL))
    write(t, "raw-plain", b"\x00" + b"just a record")
    write(t, "raw-bad-md5", b"\x00" + MAGIC + AGG_SIMPLE + b"\0" * 16)
    write(t, "raw-magic-only", b"\x00" + MAGIC + b"\0" * 16)


def getrecords_seeds():
    t = "fuzz_getrecords"

    def rec(data, seq, pk="pk", ts=None, enc=None):
        r = {"Data": base64.b64encode(data).decode(), "PartitionKey": pk,
             "SequenceNumber": seq}
        if ts is not None:
            r["ApproximateArrivalTimestamp"] = ts
        if enc is not None:
            r["EncryptionType"] = enc
        return r

    seq = "49590338271490256608559692538361571095921575989136588898"
    seq2 = "49590338271490256608559692538361571095921575989136588899"
    write(t, "empty", json.dumps({"Records": [], "NextShardIterator": "it",
                                  "MillisBehindLatest": 0}))
    write(t, "plain", json.dumps({
        "Records": [rec(b"hello", seq, ts=1562602074.896, enc="NONE"),
                    rec(b"\x00\xff binary", seq2, pk="\u00e9", enc="KMS")],
        "NextShardIterator": "AAAAAAAAAAH", "MillisBehindLatest": 1234}))
    write(t, "aggregates", json.dumps({
        "Records": [rec(wrap(AGG_FULL), seq, ts=1562602074),
                    rec(wrap(AGG_SIMPLE), seq2),
                    rec(MAGIC + AGG_SIMPLE + b"\0" * 16, "7")],
        "NextShardIterator": "it"}))
    write(t, "shard-end", json.dumps({
        "Records": [], "NextShardIterator": None, "MillisBehindLatest": None,
        "ChildShards": [
            {"ShardId": "shardId-000000000002",
             "ParentShards": ["shardId-000000000000"],
             "HashKeyRange": {"StartingHashKey": "0",
                              "EndingHashKey": "1701411834604692317316"}},
            {"ShardId": "shardId-000000000003",
             "ParentShards": ["shardId-000000000000",
                              "shardId-000000000001"],
             "HashKeyRange": {"StartingHashKey": "1701411834604692317317",
                              "EndingHashKey": "3402823669209384634633"}}]}))
    write(t, "escapes", '{"Records":[{"Data":"QUJD","PartitionKey":'
          '"a\\u0000b\\ud83d\\ude00","SequenceNumber":"0"}],'
          '"NextShardIterator":"x\\n","Unknown":{"a":[1,2.5e3,true]}}')
    write(t, "bad-base64", '{"Records":[{"Data":"Q=Q=","PartitionKey":"k",'
          '"SequenceNumber":"2"}]}')
    write(t, "bad-seq", '{"Records":[{"Data":"","PartitionKey":"k",'
          '"SequenceNumber":"-1"}]}')
    write(t, "bad-ts", '{"Records":[{"Data":"","PartitionKey":"k",'
          '"SequenceNumber":"1","ApproximateArrivalTimestamp":-1}]}')
    write(t, "not-json", '{"Records":[')
    # SubscribeToShardEvent payloads (the target parses every input both
    # ways).
    write(t, "event-continuation", json.dumps({
        "Records": [rec(b"hi", seq)], "ContinuationSequenceNumber": seq,
        "MillisBehindLatest": 3}))
    write(t, "event-shard-end", json.dumps({
        "Records": [], "ContinuationSequenceNumber": None,
        "MillisBehindLatest": 0, "ChildShards": []}))


def config_seeds():
    t = "fuzz_config"
    write(t, "minimal", "application: app\nstream: s\n")
    write(t, "env", "application: ${KCLD_FUZZ_APP:-app}\nstream: s$$\n"
          "shutdown_timeout: ${KCLD_FUZZ_VAR}\nregion: ${NOPE:-eu-west-1}\n")
    write(t, "flow", "{application: a, stream: s, batch: {size: 10, "
          "window: 1.5s}, fetch: {max_buffered_bytes: 1.5MB}}\n")
    write(t, "anchors", "application: &a app\nstream: *a\n"
          "handler: &h {type: stdout}\nlog: {level: debug, format: text}\n")
    write(t, "multilang", "application: a\nstream: s\nstarting_position: "
          "AT_TIMESTAMP\nstarting_timestamp: 1714564800\nhandler:\n"
          "  type: multilang\n  command: [\"python3\", app.py]\n"
          "  timeout: 1h30m\nretry:\n  max_retry_attempts: -1\n"
          "  max_record_age: -1\n")
    write(t, "secrets", "application: a\nstream: s\ncredentials:\n"
          "  access_key_id: AKIAEXAMPLE\n  secret_access_key: x\n")
    write(t, "errors", "application: [1]\nstream:\nworkers: many\n"
          "unknown_key: 1\nbatch: {size: 0, window: 5parsecs}\n")
    write(t, "not-yaml", "a: b: c\n  - [\n")
    write(t, "filter", "application: app\nstream: s\nfilter:\n"
          "  - data: {t: [{numeric: [\">\", 30, \"<=\", 1e2]}], "
          "$or: [{a: [1]}, {b: [~, \"x\"]}]}\n"
          "  - partitionKey: [{prefix: {equals-ignore-case: dev}}]\n" +
          r"""  - '{"Filters": [{"Pattern": "{\"data\": {\"x\": """
          r"""[{\"cidr\": \"10.0.0.0/8\"}]}}"}]}'""" + "\n")
    write(t, "multi-doc", "application: a\nstream: s\n---\nx: 1\n")
    # Hostile: nesting past the depth limit (64), a nested ${...} and a
    # URL with credentials (each refused).  The size limit (1 MiB) is past
    # the fuzzer's max_len and is tested in tests/unit/test_config.c.
    write(t, "deep-nesting", "application: a\nstream: s\nregion: " +
          "[{a: " * 40 + "1" + "}]" * 40 + "\n")
    write(t, "hostile-values", "application: a\nstream: s\n"
          "region: \"${KCLD_FUZZ_VAR:-a${B}b}\"\n"
          "endpoint: \"http://user:pw@localhost:4566\"\n")
    with open(os.path.join(HERE, "..", "unit", "config", "full.yaml"),
              "rb") as f:
        write(t, "full", f.read())
    for d in ["250ms", "1h30m", "1.5s", "0", "7d"]:
        write(t, "duration-" + d.replace(".", "_"), d)
    for s in ["8MiB", "1.5GB", "100B", "0"]:
        write(t, "size-" + s.replace(".", "_"), s)


def sigv4_seeds():
    t = "fuzz_sigv4"

    def req(flags, method, path, query, body, headers, when=None):
        out = bytes([flags | (0x80 if when is not None else 0)])
        out += struct.pack("<q", when or 0)
        fields = [method, path, query, body]
        for n, v in headers:
            fields += [n, v]
        return out + b"\0".join(f.encode() for f in fields)

    host = [("Host", "example.amazonaws.com")]
    write(t, "get-vanilla", req(1, "GET", "/", "", "", host))
    write(t, "post-json", req(1 | 2 | 8, "POST", "/", "", '{"a":1}', host + [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", "Kinesis_20131202.GetRecords")]))
    write(t, "query", req(0x40 | 1, "GET", "/", "b=2&a=1&a=0&%41=%zz&=x&&k",
                          "", []))
    write(t, "path-dots", req(1, "GET", "/a/./b/../c//d%20e/~f/", "", "",
                              host))
    write(t, "path-raw", req(0, "GET", "/a/../%2F/\xe9", "", "", host))
    write(t, "headers-fold", req(1 | 4 | 8, "POST", "/", "", "", host + [
        ("My-Header1", "  a   b\t\r\n c  "), ("my-header1", "second"),
        (" X-Dup ", "")]))
    write(t, "date-2099", req(0x40, "GET", "/", "", "", [], 4102444800))
    write(t, "no-host", req(1, "GET", "/", "", "", [("a", "b")]))
    write(t, "own-header", req(0x40, "GET", "/", "", "", [
        ("X-Amz-Date", "20150830T123600Z")]))


def http_seeds():
    t = "fuzz_http_request"
    crlf = "\r\n"

    def head(*lines):
        return crlf.join(lines) + crlf + crlf

    write(t, "get-metrics", head("GET /metrics HTTP/1.1",
                                 "Host: localhost:9500",
                                 "Accept: text/plain;version=0.0.4"))
    write(t, "head-healthz", head("HEAD /healthz?verbose=1 HTTP/1.0",
                                  "Connection: keep-alive"))
    write(t, "pipelined", head("GET / HTTP/1.1", "Host: a") +
          head("GET /metrics HTTP/1.1", "Host: a", "Connection: close"))
    write(t, "post-body", head("POST /metrics HTTP/1.1", "Host: a",
                               "Content-Length: 5") + "hello")
    write(t, "content-length-0", head("GET /metrics HTTP/1.1", "Host: a",
                                      "Content-Length: 0"))
    write(t, "chunked", head("GET /metrics HTTP/1.1", "Host: a",
                             "Transfer-Encoding: chunked"))
    write(t, "http2", head("GET /metrics HTTP/2.0"))
    write(t, "folded", head("GET /metrics HTTP/1.1", "Host: a", " folded"))
    write(t, "absolute-form", head("GET http://x/ HTTP/1.1", "Host: a",
                                   "Host: b"))
    write(t, "bare-lf", "GET / HTTP/1.1\nHost: a\n\n")
    write(t, "partial", "GET /metr")


def multilang_seeds():
    t = "fuzz_multilang"
    # Byte 0: chunk size - 1 (mod 16); byte 1: longest line - 1.
    lines = "\n".join([
        '{"action":"status","responseFor":"processRecords"}',
        '{"action":"checkpoint","sequenceNumber":null,'
        '"subSequenceNumber":null}',
        '{"action":"checkpoint","sequenceNumber":'
        '"49590338271490256608559692538361571095921575989136588898",'
        '"subSequenceNumber":3}\r',
        'Traceback (most recent call last):',
        '{"action":"checkpoint","sequenceNumber":7}',
        '{"action":"bogus"}', '[1,2]', ''])
    write(t, "protocol", bytes([3, 255]) + lines.encode())
    write(t, "short-max", bytes([0, 15]) + lines.encode())
    write(t, "status", bytes([15, 200]) +
          b'{"action":"status","responseFor":"initialize"}\n')
    write(t, "no-newline", bytes([1, 40]) +
          b'{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber"'
          b':18446744073709551615}')
    write(t, "long-status", bytes([7, 255]) +
          b'{"action":"status","responseFor":"' + b"x" * 40 + b'"}\n')


def lambda_seeds():
    t = "fuzz_lambda"
    write(t, "null", "null")
    write(t, "empty", "{}")
    write(t, "ok-empty-list", '{"batchItemFailures":[]}')
    write(t, "partial", '{"batchItemFailures":[{"itemIdentifier":'
          '"49590338271490256608559692538361571095921575989136588899"},'
          '{"itemIdentifier":"100"}]}')
    write(t, "unknown-id", '{"batchItemFailures":[{"itemIdentifier":"5"}]}')
    write(t, "bad-items", '{"batchItemFailures":[{"itemIdentifier":null},'
          '7]}')
    write(t, "error", '{"errorMessage":"boom","errorType":"ValueError",'
          '"stackTrace":["a"]}')
    write(t, "error-message-only", '{"errorMessage":"' + "m" * 600 + '"}')
    write(t, "garbage", '"just a string"')


def filter_seeds():
    t = "fuzz_filter"

    def case(name, flags, pattern, payload):
        write(t, name, bytes([flags]) + pattern.encode() + b"\0" +
              payload.encode())

    case("equals", 0, '{"data": {"Location": ["Los Angeles"]}, '
         '"partitionKey": ["1"]}', '{"Location": "Los Angeles"}')
    case("numeric-range", 0, '{"data": {"Temperature": [{"numeric": '
         '[">", 50, "<=", 60]}]}}', '{"Temperature": 55}')
    case("filter-criteria", 2, json.dumps({"Filters": [
        {"Pattern": '{"data": {"order": {"type": ["buy"]}}}'},
        {"Pattern": '{"partitionKey": [{"prefix": "device-"}]}'}]}),
        '{"record": 12345, "order": {"type": "buy", "quantity": 1000}}')
    case("pattern-wrapper", 0, json.dumps(
        {"Pattern": '{"data": {"a": [1, 2]}}'}), '{"a": 2}')
    case("strings", 0, '{"data": {"s": [{"prefix": "us-"}, {"suffix": '
         '".png"}, {"equals-ignore-case": "alice"}, {"prefix": '
         '{"equals-ignore-case": "EventB"}}, {"suffix": '
         '{"equals-ignore-case": "tBridge"}}, {"wildcard": "a*b\\\\*c"}, '
         '{"exact": "x"}, "", null, true, false, 3.0e2]}}',
         '{"s": ["EVENTBRIDGE", "x", null, 300]}')
    case("anything-but", 0, '{"data": {"a": [{"anything-but": ["x", "y"]}],'
         ' "b": [{"anything-but": [100, 200]}], "c": [{"anything-but": '
         '{"prefix": ["init", "err"]}}], "d": [{"anything-but": '
         '{"wildcard": "*/lib/*"}}], "e": [{"anything-but": '
         '{"equals-ignore-case": "Stopped"}}]}}',
         '{"a": "z", "b": [100, 50], "c": "run", "d": "/bin", "e": "go"}')
    case("exists-cidr", 1, '{"data": {"detail": {"ip": [{"cidr": '
         '"10.0.0.0/24"}, {"cidr": "2001:db8::/32"}], "c-count": '
         '[{"exists": false}], "state": [{"exists": true}]}}}',
         '{"detail": {"ip": "10.0.0.7", "state": null, "c-count": '
         '{"c1": 100}}}')
    case("or-arrays", 0, '{"data": {"$or": [{"c": [{"numeric": [">", 0]}]},'
         ' {"d": [{"numeric": ["<", 10]}]}], "employees": {"firstName": '
         '["Anna"], "lastName": ["Smith"]}}}',
         '{"c": 0, "d": 3, "employees": [[{"firstName": "Anna", '
         '"lastName": "Smith"}], [{"firstName": "Peter"}]]}')
    case("metadata", 2, '{"sequenceNumber": [{"prefix": "4959"}], '
         '"approximateArrivalTimestamp": [{"numeric": [">=", 1545084650]}], '
         '"kinesisSchemaVersion": ["1.0"]}', 'not json')
    case("escapes", 0, '{"data": {"k\\u00e9y": ["caf\\u00e9 '
         '\\ud83d\\ude00"]}}', '{"k\\u00e9y": "caf\u00e9 \\ud83d'
         '\\ude00", "k\\u00e9y": 1}')
    case("bad-operator", 0, '{"data": {"t": [{"numeric": ["=>", 5]}]}}',
         '{}')
    case("bad-field", 0, '{"order": {"type": ["buy"]}}', '{}')
    case("bad-json", 0, '{"data": {"a": [1,]}', '{}')
    case("deep-payload", 0, '{"data": {"x": ["found"]}}',
         "[" * 100 + '{"x": "found"}' + "]" * 100)
    case("many-patterns", 0, json.dumps({"Filters": [
        {"Pattern": json.dumps({"partitionKey": ["k%d" % i]})}
        for i in range(11)]}), '{}')


if __name__ == "__main__":
    http_seeds()
    multilang_seeds()
    lambda_seeds()
    deagg_seeds()
    getrecords_seeds()
    config_seeds()
    sigv4_seeds()
    filter_seeds()

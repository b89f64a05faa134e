#!/usr/bin/python3
"""peer.py - the boto3 peer: the consumer a Python team would write with
boto3 (Debian's python3-boto3), doing what kcld does with a no-op handler,
without leases.

  /usr/bin/python3 peer.py throughput ENDPOINT STREAM
  /usr/bin/python3 peer.py latency ENDPOINT STREAM SECONDS IDLE_MS

throughput: lists the shards and reads every shard from TRIM_HORIZON to its
end (no NextShardIterator) with one thread per shard (a ThreadPoolExecutor,
one shared client, a connection pool as large as the shard count),
get_records with Limit 10000; botocore decodes each record's Data from base64
to bytes, and the peer counts records and bytes.  Prints one JSON line:
records, bytes, seconds (first get_records to the last shard end), CPU
seconds and page faults (minor + major) over the same span, peak RSS (KiB).
latency: reads every shard from LATEST, sleeping IDLE_MS after an empty read
(the KCL's idleTimeBetweenReads); every record's Data is JSON {"t": epoch ms
at put}; prints {"latencies": [ms...]} after SECONDS.

Ends at once when its stdin closes (the driver that started it is gone).
"""
import json
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def watch_stdin():
    """Exit when the driver's end of stdin closes."""
    def run():
        try:
            while os.read(0, 4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=run, daemon=True).start()


def usage():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_minflt + ru.ru_majflt, ru.ru_maxrss


def client_for(endpoint, pool):
    return boto3.session.Session().client(
        'kinesis', endpoint_url=endpoint, region_name='us-east-1',
        aws_access_key_id='test', aws_secret_access_key='test',
        config=Config(max_pool_connections=max(10, pool),
                      retries={'max_attempts': 3, 'mode': 'standard'}))


def shard_ids(client, stream):
    out, token = [], None
    while True:
        r = (client.list_shards(NextToken=token) if token
             else client.list_shards(StreamName=stream))
        out.extend(s['ShardId'] for s in r['Shards'])
        token = r.get('NextToken')
        if not token:
            return out


def iterator(client, stream, shard, kind):
    return client.get_shard_iterator(StreamName=stream, ShardId=shard,
                                     ShardIteratorType=kind)['ShardIterator']


def throughput(endpoint, stream):
    client = client_for(endpoint, 64)
    ids = shard_ids(client, stream)
    its = [iterator(client, stream, s, 'TRIM_HORIZON') for s in ids]

    def drain(it):
        records = nbytes = 0
        while it:
            r = client.get_records(ShardIterator=it, Limit=10000)
            for rec in r['Records']:
                records += 1
                nbytes += len(rec['Data'])
            it = r.get('NextShardIterator')
        return records, nbytes

    cpu0, faults0, _ = usage()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(its)) as pool:
        counts = list(pool.map(drain, its))
    seconds = time.monotonic() - t0
    cpu1, faults1, maxrss = usage()
    print(json.dumps({'records': sum(c[0] for c in counts),
                      'bytes': sum(c[1] for c in counts),
                      'seconds': seconds, 'cpu': cpu1 - cpu0,
                      'faults': faults1 - faults0, 'rss_kib': maxrss}),
          flush=True)


def latency(endpoint, stream, secs, idle_ms):
    client = client_for(endpoint, 16)
    ids = shard_ids(client, stream)
    end = time.monotonic() + secs
    lat, lock = [], threading.Lock()

    def follow(shard):
        it = iterator(client, stream, shard, 'LATEST')
        while it and time.monotonic() < end:
            r = client.get_records(ShardIterator=it)
            t = time.time() * 1000
            got = []
            for rec in r['Records']:
                try:
                    got.append(t - json.loads(rec['Data'])['t'])
                except (ValueError, KeyError, TypeError):
                    pass   # Not one of ours.
            with lock:
                lat.extend(got)
            it = r.get('NextShardIterator')
            if not r['Records']:
                time.sleep(idle_ms / 1000)

    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        list(pool.map(follow, ids))
    print(json.dumps({'latencies': lat}), flush=True)


def main(argv):
    watch_stdin()
    if len(argv) == 3 and argv[0] == 'throughput':
        throughput(argv[1], argv[2])
    elif len(argv) == 5 and argv[0] == 'latency':
        latency(argv[1], argv[2], float(argv[3]), float(argv[4]))
    else:
        sys.stderr.write('usage: peer.py throughput ENDPOINT STREAM\n'
                         '       peer.py latency ENDPOINT STREAM SECONDS '
                         'IDLE_MS\n')
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

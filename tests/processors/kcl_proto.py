"""kcl_proto.py - a minimal KCL MultiLang client for kcld's tests.

It speaks the protocol the way amazon_kclpy does: one JSON line per message
on stdin, checkpoint requests and status answers on stdout.  Standard library
only.  Every message received and every checkpoint answer is appended to the
file named by $ML_LOG (one JSON object per line, with the pid), so a test can
check what the processor saw.
"""
import json
import os
import sys


class CheckpointError(Exception):
    """kcld answered a checkpoint request with an error."""


class Channel:
    def __init__(self):
        path = os.environ.get("ML_LOG")
        self.log = open(path, "a") if path else None

    def note(self, **kw):
        if self.log:
            kw["pid"] = os.getpid()
            kw["shard"] = os.environ.get("KCLD_SHARD_ID")
            self.log.write(json.dumps(kw) + "\n")
            self.log.flush()

    def read(self):
        line = sys.stdin.readline()
        if not line:
            return None
        msg = json.loads(line)
        self.note(got=msg)
        return msg

    def write(self, msg):
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


class Checkpointer:
    def __init__(self, ch):
        self.ch = ch

    def checkpoint(self, sequence_number=None, sub_sequence_number=None):
        self.ch.write({"action": "checkpoint",
                       "sequenceNumber": sequence_number,
                       "subSequenceNumber": sub_sequence_number})
        msg = self.ch.read()
        if msg is None or msg.get("action") != "checkpoint":
            raise RuntimeError("expected a checkpoint answer, got %r" % msg)
        if msg.get("error"):
            raise CheckpointError(msg["error"])
        return msg


def run(processor):
    """Reads messages until stdin closes; calls processor.<action>(msg,
    checkpointer, channel) and answers each with its status."""
    ch = Channel()
    cp = Checkpointer(ch)
    while True:
        msg = ch.read()
        if msg is None:
            ch.note(eof=True)
            return
        action = msg["action"]
        getattr(processor, action)(msg, cp, ch)
        ch.write({"action": "status", "responseFor": action})


class Base:
    """Does nothing but answer; subclasses override what they test."""

    def initialize(self, msg, cp, ch):
        pass

    def processRecords(self, msg, cp, ch):
        pass

    def leaseLost(self, msg, cp, ch):
        pass

    def shardEnded(self, msg, cp, ch):
        pass

    def shutdownRequested(self, msg, cp, ch):
        pass


def try_checkpoint(cp, ch, seq=None, sub=None):
    """Checkpoints and notes the answer (or the error) in the log."""
    try:
        ans = cp.checkpoint(seq, sub)
        ch.note(checkpoint=ans.get("sequenceNumber"), error=None)
    except CheckpointError as e:
        ch.note(checkpoint=seq, error=str(e))
